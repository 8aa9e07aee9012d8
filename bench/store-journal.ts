/**
 * Acknowledged writes/s of the embedded storage backend (store/backends/embedded.ts) with its
 * journal fsynced, beside references measured in the same rounds (interleaved A B C D):
 *
 *   journal+fsync  32 concurrent writers, ~1 KiB values, each commit acknowledged after its
 *                  group's fdatasync (the default)
 *   journal        the same with fsync off (the cost of the journal without the disk flush)
 *   memory         no dir: no journal at all (the cost of the ioredis-mock keyspace)
 *   disk fsync     one writer appending 1 KiB + fdatasync per write: what acknowledging every
 *                  write with its own fsync would reach on this disk
 *
 *   node --import tsx bench/store-journal.ts [--rounds 5] [--writes 6400] [--out bench/results/store-journal.md]
 *
 * Temp dirs under the OS temp dir, removed at the end; bounded in count.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execFileSync } from 'node:child_process';
import { EmbeddedStorage, type EmbeddedStorageOptions } from '../src/store/backends/embedded.js';
import { fmt, median, pairedRatio } from './stats.js';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const outIdx = process.argv.indexOf('--out');
const out = outIdx >= 0 ? process.argv[outIdx + 1] : undefined;
const rounds = arg('rounds', 5);
const writes = arg('writes', 6400);
const WRITERS = 32;
const value = JSON.stringify({ kind: 'ConfigMap', data: { v: 'x'.repeat(1000) } });

async function storage(o: Omit<EmbeddedStorageOptions, 'dir'>, withDir: boolean): Promise<{ rate: number; batch: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'kubeloop-bench-journal-'));
  try {
    const s = await EmbeddedStorage.open({ ...o, dir: withDir ? dir : undefined });
    const per = writes / WRITERS;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: WRITERS }, async (_, w) => {
        for (let i = 0; i < per; i++) {
          const r = await s.commit([{ op: 'create', key: `ConfigMap/bench/w${w}-${i}`, value }]);
          if (!r.ok) throw new Error('conflict in a create-only bench');
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    const st = s.stats();
    await s.close();
    return { rate: writes / secs, batch: st.batches ? st.commits / st.batches : NaN };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function diskFsync(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'kubeloop-bench-fsync-'));
  try {
    const fh = await open(join(dir, 'f'), 'a', 0o600);
    const buf = Buffer.alloc(1100, 120);
    const n = Math.max(50, Math.round(writes / 32));
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      await fh.write(buf);
      await fh.datasync();
    }
    const secs = (performance.now() - t0) / 1000;
    await fh.close();
    return n / secs;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const r = { fsync: [] as number[], nofsync: [] as number[], memory: [] as number[], disk: [] as number[], batch: [] as number[] };
const load0 = os.loadavg()[0];
for (let i = 0; i < rounds; i++) {
  const a = await storage({ fsync: true }, true);
  r.fsync.push(a.rate);
  r.batch.push(a.batch);
  r.nofsync.push((await storage({ fsync: false }, true)).rate);
  r.memory.push((await storage({}, false)).rate);
  r.disk.push(await diskFsync());
  console.log(`round ${i + 1}: journal+fsync ${fmt(r.fsync[i])}/s (${fmt(a.batch)} commits/batch), journal ${fmt(r.nofsync[i])}/s, memory ${fmt(r.memory[i])}/s, disk fsync ${fmt(r.disk[i])}/s`);
}
let fs = '?';
try {
  fs = execFileSync('df', ['-T', tmpdir()], { encoding: 'utf8' }).trim().split('\n').at(-1)!.split(/\s+/).slice(0, 2).join(' ');
} catch {
  // df missing: the table says '?'
}
const md = `# bench/store-journal.ts — acknowledged writes/s of the embedded backend

\`node --import tsx bench/store-journal.ts --rounds ${rounds} --writes ${writes}\`: ${WRITERS} concurrent writers,
${writes} creates of ~1 KiB per cell, ${rounds} interleaved rounds; medians. ${os.cpus().length} CPUs, load average
${load0.toFixed(1)} at the start → ${os.loadavg()[0].toFixed(1)} at the end; ${tmpdir()} on ${fs}.

| | writes/s (median) | vs journal+fsync |
|---|---|---|
| journal+fsync (default: acknowledged after the group's fdatasync) | ${fmt(median(r.fsync))} | 1 |
| journal, fsync off | ${fmt(median(r.nofsync))} | ${fmt(pairedRatio(r.nofsync, r.fsync))}× |
| memory (no journal) | ${fmt(median(r.memory))} | ${fmt(pairedRatio(r.memory, r.fsync))}× |
| disk: 1 KiB append + fdatasync per write, 1 writer | ${fmt(median(r.disk))} | ${fmt(pairedRatio(r.disk, r.fsync))}× |

Commits per batch (per fdatasync) with fsync on: median ${fmt(median(r.batch))}. Goal: ≥ 5,000 acknowledged writes/s with fsync on.

Per round (writes/s): journal+fsync ${r.fsync.map((x) => fmt(x)).join(' / ')}; journal ${r.nofsync.map((x) => fmt(x)).join(' / ')};
memory ${r.memory.map((x) => fmt(x)).join(' / ')}; disk fsync ${r.disk.map((x) => fmt(x)).join(' / ')}. At this load the
spread is wide: the ratios are medians of per-round ratios, the cells medians of rounds.
`;
console.log(`\n${md}`);
if (out) writeFileSync(out, md);
