/**
 * Load clients of the benchmark, each run in a child process of bench/run.ts so that the
 * orchestrator's own event loop never sits on the measured path. Prints one JSON line.
 *
 *   load.ts rate --host H --port P --rps R --conns C --seconds S [--warmup S]
 *     open-loop HTTP/1.1 keep-alive client at a fixed rate: request k is due at t0 + k/R and
 *     its latency is counted from that due time (a late send counts as latency: no coordinated
 *     omission). Reports p50/p90/p99/max and how many were sent/answered/failed.
 *   load.ts bulk --host H --port P --streams N --seconds S [--warmup S]
 *     N parallel streams from the backend's TCP source (`S` + length); bytes received during
 *     the S-second window after the warm-up.
 *   load.ts idle --host H --port P --count N [--concurrency K]
 *     opens N connections (each `P`, waits for `p`: the whole path is up), reports over IPC,
 *     holds them until told `close` (or the parent goes away), then closes them all.
 *
 * Every mode is bounded in time and count; loopback addresses only.
 */
import net from 'node:net';

type Args = Record<string, string>;

function parse(argv: string[]): { mode: string; a: Args } {
  const [mode, ...rest] = argv;
  const a: Args = {};
  for (let i = 0; i < rest.length; i += 2) a[rest[i].replace(/^--/, '')] = rest[i + 1];
  if (!mode || !['rate', 'bulk', 'idle'].includes(mode)) throw new Error('usage: load.ts rate|bulk|idle --host H --port P ...');
  if (!a.host?.startsWith('127.')) throw new Error(`--host ${a.host}: loopback (127.0.0.0/8) only`);
  return { mode, a };
}

const num = (a: Args, k: string, d: number, max: number): number => Math.min(max, Number(a[k] ?? d));
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

function pct(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const REQ = Buffer.from('GET / HTTP/1.1\r\nHost: bench\r\n\r\n');

/** One keep-alive HTTP connection with at most one request in flight. */
class HttpConn {
  readonly s: net.Socket;
  busy = false;
  due = 0;
  #buf: Buffer = Buffer.alloc(0);
  constructor(host: string, port: number, onResponse: (c: HttpConn) => void, onFail: (c: HttpConn) => void) {
    this.s = net.connect({ host, port, noDelay: true });
    this.s.on('data', (d: Buffer) => {
      this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : d;
      for (;;) {
        const end = this.#buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const m = /content-length:\s*(\d+)/i.exec(this.#buf.subarray(0, end).toString('latin1'));
        const total = end + 4 + Number(m?.[1] ?? 0);
        if (this.#buf.length < total) return;
        this.#buf = this.#buf.subarray(total);
        this.busy = false;
        onResponse(this);
      }
    });
    const fail = (): void => {
      if (this.busy) {
        this.busy = false;
        onFail(this);
      }
    };
    this.s.on('error', fail);
    this.s.on('close', fail);
  }
  send(due: number): void {
    this.busy = true;
    this.due = due;
    this.s.write(REQ);
  }
}

async function rate(a: Args): Promise<unknown> {
  const host = a.host!;
  const port = Number(a.port);
  const rps = num(a, 'rps', 1000, 50_000);
  const conns = num(a, 'conns', 16, 1000);
  const seconds = num(a, 'seconds', 5, 120);
  const warmup = num(a, 'warmup', 1, 10);
  const total = Math.round(rps * (seconds + warmup));
  const lat = new Float64Array(total);
  let recorded = 0;
  let sent = 0;
  let answered = 0;
  let failed = 0;
  const backlog: number[] = [];
  const idle: HttpConn[] = [];
  const t0 = nowUs() + 200_000; // connections get 200 ms to open
  const warmEnd = t0 + warmup * 1e6;
  const onResponse = (c: HttpConn): void => {
    const t = nowUs();
    answered++;
    if (c.due >= warmEnd) lat[recorded++] = (t - c.due) / 1000;
    const next = backlog.shift();
    if (next !== undefined) c.send(next);
    else idle.push(c);
  };
  const onFail = (): void => {
    failed++;
  };
  const all: HttpConn[] = [];
  for (let i = 0; i < conns; i++) {
    const c = new HttpConn(host, port, onResponse, onFail);
    all.push(c);
    c.s.once('connect', () => idle.push(c));
  }
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = nowUs();
      const due = Math.min(total, Math.floor(((now - t0) * rps) / 1e6));
      while (sent < due) {
        const when = t0 + (sent * 1e6) / rps;
        sent++;
        const c = idle.pop();
        if (c) c.send(when);
        else backlog.push(when);
      }
      if (sent >= total) {
        clearInterval(timer);
        // the last answers get 2 s
        const end = Date.now() + 2000;
        const wait = setInterval(() => {
          if (answered + failed >= total || Date.now() > end) {
            clearInterval(wait);
            resolve();
          }
        }, 5);
      }
    };
    const timer = setInterval(tick, 1);
  });
  for (const c of all) c.s.destroy();
  const sorted = lat.subarray(0, recorded).sort();
  return {
    rps,
    conns,
    seconds,
    sent,
    answered,
    failed,
    unanswered: sent - answered - failed,
    p50Ms: pct(sorted, 50),
    p90Ms: pct(sorted, 90),
    p99Ms: pct(sorted, 99),
    maxMs: sorted[sorted.length - 1] ?? NaN,
  };
}

function request(len: bigint): Buffer {
  const b = Buffer.alloc(9);
  b[0] = 0x53;
  b.writeBigUInt64BE(len, 1);
  return b;
}

async function bulk(a: Args): Promise<unknown> {
  const host = a.host!;
  const port = Number(a.port);
  const streams = num(a, 'streams', 1, 64);
  const seconds = num(a, 'seconds', 5, 120);
  const warmup = num(a, 'warmup', 0.5, 10);
  let bytes = 0;
  let counting = false;
  let errors = 0;
  const socks: net.Socket[] = [];
  for (let i = 0; i < streams; i++) {
    const s = net.connect({ host, port, noDelay: true });
    s.on('data', (d: Buffer) => {
      if (counting) bytes += d.length;
    });
    s.on('error', () => errors++);
    s.write(request(1n << 50n)); // "forever": the window below bounds it
    socks.push(s);
  }
  await new Promise((r) => setTimeout(r, warmup * 1000));
  counting = true;
  const t = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  counting = false;
  const elapsed = Number(process.hrtime.bigint() - t) / 1e9;
  const ended = socks.filter((s) => s.readableEnded || s.destroyed).length;
  for (const s of socks) s.destroy();
  return { streams, seconds: elapsed, bytes, gbitPerSec: (bytes * 8) / elapsed / 1e9, errors, endedEarly: ended };
}

async function idle(a: Args): Promise<void> {
  const host = a.host!;
  const port = Number(a.port);
  const count = num(a, 'count', 1000, 20_000);
  const concurrency = num(a, 'concurrency', 200, 2000);
  const socks: net.Socket[] = [];
  let opened = 0;
  let failed = 0;
  let next = 0;
  const t0 = Date.now();
  await new Promise<void>((resolve) => {
    const one = (): void => {
      if (next >= count) {
        if (opened + failed >= count) resolve();
        return;
      }
      next++;
      const s = net.connect({ host, port });
      socks.push(s);
      let done = false;
      const finish = (ok: boolean): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (ok) opened++;
        else {
          failed++;
          s.destroy();
        }
        one();
      };
      const timer = setTimeout(() => finish(false), 10_000);
      s.on('error', () => finish(false));
      s.once('data', () => finish(true));
      s.write('P');
    };
    for (let i = 0; i < concurrency; i++) one();
  });
  const still = socks.filter((s) => !s.destroyed).length;
  process.send!({ opened, failed, held: still, ms: Date.now() - t0 });
  await new Promise<void>((resolve) => {
    process.on('message', (m) => m === 'close' && resolve());
    process.on('disconnect', () => resolve());
    setTimeout(resolve, 300_000).unref(); // bounded even if the parent forgets
  });
  for (const s of socks) s.destroy();
  process.exit(0);
}

const { mode, a } = parse(process.argv.slice(2));
if (mode === 'idle') await idle(a);
else {
  const out = mode === 'rate' ? await rate(a) : await bulk(a);
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
}
