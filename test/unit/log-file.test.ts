/**
 * agent/endpoint/log-file.ts against a plain reference: for seeded random files (empty lines, lines
 * longer than the chunk, with and without a final newline) and chunk sizes down to one byte,
 * tailOffset finds where `tail -n k` starts, copyRange copies exactly the range through a
 * small buffer pool, and LineStamper stamps each line once however the chunks fall.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { BufferPool, type ChunkSink, LineStamper, copyRange, tailOffset } from '../../src/agent/endpoint/log-file.js';

/** mulberry32: a fixed seed gives the same files every run */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** the byte offset where the last k lines begin, by splitting the whole text (the old way) */
function reference(text: string, k: number): number {
  if (k <= 0) return Buffer.byteLength(text);
  const parts = text.split('\n');
  if (parts[parts.length - 1] === '') parts.pop();
  const kept = parts.slice(-k).join('\n') + (text.endsWith('\n') && parts.length ? '\n' : '');
  return Buffer.byteLength(text) - Buffer.byteLength(kept);
}

const dir = mkdtempSync(join(tmpdir(), 'kubeloop-log-file-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('tailOffset agrees with splitting the whole file, for any chunk size', async (t) => {
  const rnd = prng(0x14f);
  let cases = 0;
  for (let f = 0; f < 40; f++) {
    const lines: string[] = [];
    const n = Math.floor(rnd() * 12);
    for (let i = 0; i < n; i++) {
      const r = rnd();
      lines.push(r < 0.2 ? '' : r < 0.3 ? 'L'.repeat(40 + Math.floor(rnd() * 60)) : `line-${i}`);
    }
    const text = lines.join('\n') + (rnd() < 0.5 ? '\n' : '');
    const file = join(dir, `f${f}.log`);
    writeFileSync(file, text);
    const fh = await open(file, 'r');
    try {
      for (const chunk of [1, 2, 3, 7, 16, 64, 1 << 16]) {
        for (let k = 0; k <= n + 2; k++) {
          const got = await tailOffset(fh, Buffer.byteLength(text), k, chunk);
          if (got !== reference(text, k)) t.fail(`file ${JSON.stringify(text)} k=${k} chunk=${chunk}: got ${got}, want ${reference(text, k)}`);
          cases++;
        }
      }
    } finally {
      await fh.close();
    }
  }
  t.pass(`${cases} cases agree`);
  t.equal(reference('', 1), 0);
});

t.test('copyRange copies exactly [from, to) through a pool of 2 buffers, and stops when told', async (t) => {
  const text = Array.from({ length: 5000 }, (_, i) => `row ${i}`).join('\n');
  const file = join(dir, 'copy.log');
  writeFileSync(file, text);
  const fh = await open(file, 'r');
  t.teardown(() => fh.close());
  const pool = new BufferPool(2);
  const got: Buffer[] = [];
  const pending: Array<() => void> = [];
  const sink: ChunkSink = {
    take: () => pool.take(),
    give: (b) => pool.give(b),
    put: async (chunk, release) => {
      got.push(Buffer.from(chunk));
      // release later, as a socket does once it has taken the bytes
      pending.push(release);
      if (pending.length >= 2) pending.shift()!();
      return true;
    },
  };
  const end = await copyRange(fh, 100, 30_000, sink);
  pending.forEach((r) => r());
  t.equal(end, 30_000);
  t.equal(Buffer.concat(got).toString(), text.slice(100, 30_000));
  let calls = 0;
  const stopAt = await copyRange(fh, 0, 200_000, { ...sink, put: async (_c, release) => (release(), ++calls < 1) });
  t.equal(calls, 1, 'one chunk, then stopped');
  t.ok(stopAt > 0 && stopAt <= 65_536, 'the offset reached is returned');
});

t.test('LineStamper stamps each line once, whatever the chunk boundaries', async (t) => {
  const text = 'a\nbb\n\nccc\nlast';
  for (let cut = 0; cut <= text.length; cut++) {
    let n = 0;
    const s = new LineStamper(() => `T${n++}`);
    const out = Buffer.concat([s.transform(Buffer.from(text.slice(0, cut))), s.transform(Buffer.from(text.slice(cut)))]).toString();
    t.equal(out, 'T0 a\nT1 bb\nT2 \nT3 ccc\nT4 last', `cut at ${cut}`);
  }
});
