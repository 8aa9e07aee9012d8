/**
 * A real `redis-server` on a free loopback port, in its own temp dir, for one test file.
 * `stop()` ends it (SIGTERM, then SIGKILL) and waits; `restart()` starts it again on the same
 * port and dir (with `appendonly yes`, what was acknowledged is still there).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './wait.js';

export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  /** SIGKILL (a crash) or SIGTERM (a clean shutdown); resolves when the process is gone */
  stop(signal?: NodeJS.Signals): Promise<void>;
  restart(): Promise<void>;
  /** the running server's pid (for SIGSTOP/SIGCONT) */
  pid(): number;
  /** stop and remove the dir */
  close(): Promise<void>;
}

export interface RedisServerOptions {
  appendonly?: boolean;
  password?: string;
  /** PEM files: serve TLS only (`url` is then `rediss://`), clients are not asked for certificates */
  tls?: { certFile: string; keyFile: string; caFile: string };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function pings(port: number, password?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    let got = '';
    const done = (ok: boolean): void => {
      c.destroy();
      resolve(ok);
    };
    c.setTimeout(500, () => done(false));
    c.on('error', () => done(false));
    c.on('connect', () => c.write(`${password ? `AUTH ${password}\r\n` : ''}PING\r\n`));
    c.on('data', (d) => {
      got += d.toString();
      if (got.includes('+PONG')) done(true);
      else if (got.includes('-')) done(false);
    });
  });
}

/** the TLS port accepts a handshake (the certificate is not checked here: the test does that) */
function tlsPings(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    const done = (ok: boolean): void => {
      c.destroy();
      resolve(ok);
    };
    c.setTimeout(500, () => done(false));
    c.on('error', () => done(false));
    c.on('secureConnect', () => c.write('PING\r\n'));
    c.on('data', (d) => done(d.toString().includes('+PONG')));
  });
}

export async function startRedisServer(o: RedisServerOptions = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'kubeloop-redis-'));
  const port = await freePort();
  let proc: ChildProcess | undefined;
  const args = [
    ...(o.tls
      ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', o.tls.certFile, '--tls-key-file', o.tls.keyFile, '--tls-ca-cert-file', o.tls.caFile, '--tls-auth-clients', 'no']
      : ['--port', String(port)]),
    '--bind', '127.0.0.1', '--dir', dir, '--save', '',
    '--appendonly', o.appendonly ? 'yes' : 'no', '--appendfsync', 'everysec',
    ...(o.password ? ['--requirepass', o.password] : []),
  ];
  const start = async (): Promise<void> => {
    const p = spawn('redis-server', args, { stdio: 'ignore' });
    proc = p;
    let exited = false;
    p.once('exit', () => (exited = true));
    await waitFor(async () => {
      if (exited) throw new Error('redis-server exited at start');
      return o.tls ? tlsPings(port) : pings(port, o.password);
    }, { what: `redis-server on 127.0.0.1:${port}`, intervalMs: 20 });
  };
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill(signal);
    const t = setTimeout(() => p.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(t);
  };
  await start();
  return {
    port,
    url: `${o.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`,
    dir,
    stop,
    restart: start,
    pid: () => {
      if (!proc?.pid) throw new Error('redis-server is not running');
      return proc.pid;
    },
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
