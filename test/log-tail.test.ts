/**
 * Issue 14, finding 4: `kubectl logs big --tail=1` read the whole file synchronously on the
 * daemon's event loop (+290 MB RSS per read of a 300 MB log, DNS and the proxy frozen for 4 s).
 * Here, against a real daemon and the real kubectl: the last N lines of a ~50 MB log are exactly
 * right (lines longer than the read chunk, a file without a final newline), --limit-bytes,
 * --previous, --timestamps and -f keep working, and the daemon's RSS grows by far less than the
 * file while it is tailed and streamed. Latency figures are bench/log-tail.ts's job.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, openSync, readFileSync, readdirSync, readlinkSync, writeFileSync, writeSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import t from 'tap';
import { type ApiClient, daemonApi } from './helpers/api.js';
import { type RunningDaemon, startDaemon } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

const MiB = 1 << 20;

const rssMiB = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
/** what the daemon's descriptors point to */
const fdTargets = (pid: number): string[] =>
  readdirSync(`/proc/${pid}/fd`).map((f) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${f}`);
    } catch {
      return 'gone';
    }
  });
/**
 * the daemon's descriptors, without the one inotify descriptor libuv opens at the first
 * fs.watch and keeps for the life of the process (watches come and go inside it)
 */
const fdCount = (pid: number): number => fdTargets(pid).filter((l) => l !== 'anon_inode:inotify').length;

/** the log's lines, as written; `text(i)` is line i without its newline */
interface BigLog {
  file: string;
  lines: number;
  bytes: number;
  sha256: string;
  text(i: number): string;
}

/**
 * Writes ~`mb` MiB of numbered lines, then a few lines longer than the daemon's 64 KiB read
 * chunk, then a last line without a newline — in 4 MiB writes, so the test stays light.
 */
function writeBigLog(file: string, mb: number): BigLog {
  const short = (i: number): string => `line ${String(i).padStart(9, '0')} ${'x'.repeat(84)}`; // 99 bytes + \n
  const long = (i: number): string => `long ${i} ${String(i % 10).repeat(150_000 + (i % 7))}`;
  const shortCount = Math.floor((mb * MiB) / 100);
  const text = (i: number): string => (i < shortCount ? short(i) : i < shortCount + 3 ? long(i) : i === shortCount + 3 ? `last line without newline ${'z'.repeat(70_000)}` : '');
  const lines = shortCount + 4;
  const hash = createHash('sha256');
  const fd = openSync(file, 'a');
  let bytes = 0;
  let buf = '';
  const flush = (): void => {
    writeSync(fd, buf);
    hash.update(buf);
    bytes += Buffer.byteLength(buf);
    buf = '';
  };
  for (let i = 0; i < lines; i++) {
    buf += text(i) + (i < lines - 1 ? '\n' : '');
    if (buf.length > 4 * MiB) flush();
  }
  flush();
  closeSync(fd);
  return { file, lines, bytes, sha256: hash.digest('hex'), text };
}

/** what `tail -n k` gives for the log */
const expectedTail = (log: BigLog, k: number): string => {
  const out: string[] = [];
  for (let i = Math.max(0, log.lines - k); i < log.lines; i++) out.push(log.text(i));
  return out.join('\n');
};

/** GET a log URL, streaming: bytes and sha256 of the body, never the body itself */
function streamGet(api: ApiClient, path: string): Promise<{ status: number; bytes: number; sha256: string; head: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, api.server);
    const opts = { host: url.hostname, port: url.port, path: url.pathname + url.search, agent: false as const, ...(api.token ? { headers: { authorization: `Bearer ${api.token}` } } : {}) };
    const onRes = (res: http.IncomingMessage): void => {
      const hash = createHash('sha256');
      let bytes = 0;
      let head = '';
      res.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
        if (head.length < 200) head += c.toString('utf8', 0, 200);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, sha256: hash.digest('hex'), head }));
      res.on('error', reject);
    };
    const req = api.server.startsWith('https:') ? https.get({ ...opts, ...api.tls }, onRes) : http.get(opts, onRes);
    req.on('error', reject);
  });
}

async function bigPod(d: RunningDaemon, api: ApiClient, name: string): Promise<string> {
  const r = await api.request('POST', '/api/v1/namespaces/default/pods', {
    body: { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'main', image: 'sleeper', command: ['sleep', '3600'] }] } },
  });
  if (r.status !== 201) throw new Error(`creating pod ${name}: ${r.status} ${r.body}`);
  const podsDir = join(d.stateDir, 'pods');
  return waitFor(
    () => {
      const dir = readdirSync(podsDir).find((e) => e.startsWith(`default_${name}_`));
      return dir && readdirSync(join(podsDir, dir, 'main')).includes('0.log') ? join(podsDir, dir, 'main') : undefined;
    },
    { what: `the log file of pod ${name}`, timeoutMs: 20_000 },
  );
}


t.test('kubectl logs on a ~50 MB log: exact tails, streamed full read, bounded daemon RSS', async (t) => {
  const d = await startDaemon(['--pod-cidr', '127.166.0.0/16', '--service-cidr', '127.167.0.0/16', '--node-ip', '127.0.166.1', '--nodeport-addresses', '127.0.166.1', '--lb-pool', '127.168.0.0/16', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--log-level', 'warn']);
  t.teardown(() => d.stop());
  const api = await daemonApi(d);
  const dir = await bigPod(d, api, 'big');
  const log = writeBigLog(join(dir, '0.log'), 48);
  t.ok(log.bytes > 48 * MiB, `log written: ${(log.bytes / MiB).toFixed(1)} MiB, ${log.lines} lines`);
  const pid = d.proc.pid!;

  // warm up the paths (kubectl discovery, the handler) before taking the RSS baseline
  t.equal((await api.kubectl('logs', 'big', '--tail=1')).stdout, expectedTail(log, 1));
  const rssBefore = rssMiB(pid);
  let rssMax = rssBefore;
  const sampler = setInterval(() => {
    try {
      rssMax = Math.max(rssMax, rssMiB(pid));
    } catch {
      // gone: the assertions below say so
    }
  }, 10);
  t.teardown(() => clearInterval(sampler));

  for (const k of [1, 2, 3, 4, 5, 1000]) {
    const r = await api.kubectl('logs', 'big', `--tail=${k}`);
    t.equal(r.code, 0, `--tail=${k} succeeds`);
    t.ok(r.stdout === expectedTail(log, k), `--tail=${k}: exactly the last ${k} lines (${r.stdout.length} bytes; long lines and the unterminated last line included)`);
  }
  t.equal((await api.kubectl('logs', 'big', '--tail=0')).stdout, '', '--tail=0: nothing');
  const limited = await api.kubectl('logs', 'big', '--limit-bytes=1000');
  t.equal(limited.stdout, readFileSync(log.file).subarray(0, 1000).toString('utf8'), '--limit-bytes=1000: the first 1000 bytes');
  const tailLimited = await api.kubectl('logs', 'big', '--tail=2', '--limit-bytes=10');
  t.equal(tailLimited.stdout, expectedTail(log, 2).slice(0, 10), '--tail with --limit-bytes: the first bytes of the tail');

  const full = await streamGet(api, '/api/v1/namespaces/default/pods/big/log');
  t.equal(full.status, 200);
  t.equal(full.bytes, log.bytes, 'the full read has every byte');
  t.equal(full.sha256, log.sha256, 'and they are the file');
  const all = await streamGet(api, `/api/v1/namespaces/default/pods/big/log?tailLines=${log.lines + 5}`);
  t.equal(all.sha256, log.sha256, 'tailLines over the line count: the whole file');
  const stamped = await api.kubectl('logs', 'big', '--tail=2', '--timestamps');
  const stampedLines = stamped.stdout.split('\n');
  t.equal(stampedLines.length, 2, '--timestamps --tail=2: two lines');
  t.ok(stampedLines.every((l) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z /.test(l)), 'each line stamped once, long lines included');
  t.equal(stampedLines.map((l) => l.slice(l.indexOf(' ') + 1)).join('\n'), expectedTail(log, 2));

  clearInterval(sampler);
  const grew = rssMax - rssBefore;
  t.ok(grew < 24, `daemon RSS grew ${grew.toFixed(1)} MiB while a ${(log.bytes / MiB).toFixed(0)} MiB log was tailed 9 times and streamed twice (before ${rssBefore.toFixed(0)} MiB)`);
});

t.test('--previous, and -f: appended lines arrive, the stream ends with the client, no descriptor left', async (t) => {
  const d = await startDaemon(['--pod-cidr', '127.169.0.0/16', '--service-cidr', '127.170.0.0/16', '--node-ip', '127.0.169.1', '--nodeport-addresses', '127.0.169.1', '--lb-pool', '127.171.0.0/16', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--log-level', 'warn']);
  t.teardown(() => d.stop());
  const api = await daemonApi(d);
  const dir = await bigPod(d, api, 'follow');
  writeFileSync(join(dir, '0.log'), 'run zero\nlast of run zero');
  // a newer file is the running container's; the one before is --previous
  writeFileSync(join(dir, '1.log'), 'run one, a\nrun one, b\n');
  t.equal((await api.kubectl('logs', 'follow', '--previous')).stdout, 'run zero\nlast of run zero', '--previous: the file before the newest');
  t.equal((await api.kubectl('logs', 'follow', '--tail=1')).stdout, 'run one, b\n');
  t.equal((await api.kubectl('logs', 'follow', '--previous', '--tail=1')).stdout, 'last of run zero');
  for (const [query, message] of [
    ['tailLines=-1', 'PodLogOptions "follow" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0'],
    ['limitBytes=0', 'PodLogOptions "follow" is invalid: limitBytes: Invalid value: 0: must be greater than 0'],
    ['sinceSeconds=0', 'PodLogOptions "follow" is invalid: sinceSeconds: Invalid value: 0: must be greater than 0'],
  ]) {
    const r = await api.request('GET', `/api/v1/namespaces/default/pods/follow/log?${query}`);
    t.equal(r.status, 422, `${query}: 422`);
    t.equal(r.json<{ message: string }>().message, message, `${query}: upstream's message`);
  }

  const pid = d.proc.pid!;
  await new Promise((r) => setTimeout(r, 200)); // let the kubectl connections above close
  const fdsBefore = fdCount(pid);
  const url = new URL('/api/v1/namespaces/default/pods/follow/log?follow=true&tailLines=1', api.server);
  let got = '';
  const opts = { host: url.hostname, port: url.port, path: url.pathname + url.search, agent: false as const, ...(api.token ? { headers: { authorization: `Bearer ${api.token}` } } : {}) };
  const onRes = (res: http.IncomingMessage): void => {
    res.setEncoding('utf8');
    res.on('data', (c: string) => (got += c));
  };
  const req = api.server.startsWith('https:') ? https.get({ ...opts, ...api.tls }, onRes) : http.get(opts, onRes);
  req.on('error', () => {});
  t.teardown(() => req.destroy());
  await waitFor(() => got === 'run one, b\n', { what: 'the tail before following' });
  appendFileSync(join(dir, '1.log'), 'appended 1\n');
  await waitFor(() => got.endsWith('appended 1\n'), { what: 'an appended line' });
  appendFileSync(join(dir, '1.log'), `appended 2 ${'y'.repeat(200_000)}\n`);
  await waitFor(() => got.endsWith(`appended 2 ${'y'.repeat(200_000)}\n`), { what: 'a long appended line' });
  t.equal(got, `run one, b\nappended 1\nappended 2 ${'y'.repeat(200_000)}\n`, 'follow delivers exactly what was appended');
  req.destroy();
  await waitFor(() => fdCount(pid) <= fdsBefore, { what: `the daemon's descriptors back to ${fdsBefore} after the follower left (now ${fdCount(pid)})`, timeoutMs: 5000 });
  // container logs only: the embedded store keeps its journal segment (journal-N.log) open
  t.notOk(fdTargets(pid).some((l) => l.startsWith(join(d.stateDir, 'pods')) && l.endsWith('.log')), 'no container log file is open in the daemon');
  t.pass('the follower leaving closes its file and watch');
});
