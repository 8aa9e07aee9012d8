/**
 * A minimal upstream client for forwarding: one shared UDP socket with queries matched by ID
 * and source, TCP for replies that came back truncated. Bounded: a timeout per query and a cap
 * on queries in flight, so a dead upstream costs SERVFAILs, not memory.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { HEADER } from './wire.js';
import { ipBytes } from './ip.js';

export interface UpstreamAddress {
  host: string;
  port: number;
}

/** `ip:port`, `ip` (port 53) or `[v6]:port` → address; throws an error naming the expected form. */
export function parseUpstream(s: string): UpstreamAddress {
  const bad = (): Error =>
    new Error(`invalid DNS upstream "${s}": expected an IP address with an optional port, e.g. 127.0.0.53:53 or [::1]:53`);
  let host = s;
  let port = 53;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (v6) {
    host = v6[1];
    if (v6[2]) port = Number(v6[2]);
  } else if (s.split(':').length === 2) {
    const [h, p] = s.split(':');
    if (!/^\d+$/.test(p)) throw bad();
    host = h;
    port = Number(p);
  }
  if (!ipBytes(host) || !(port >= 1 && port <= 65535)) throw bad();
  return { host, port };
}

interface Pending {
  resolve(b: Buffer): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class Upstream {
  readonly address: UpstreamAddress;
  readonly #timeoutMs: number;
  readonly #maxInFlight: number;
  readonly #pending = new Map<number, Pending>();
  readonly #tcp = new Set<net.Socket>();
  #udp: dgram.Socket | undefined;
  #closed = false;

  constructor(o: { address: UpstreamAddress; timeoutMs?: number; maxInFlight?: number }) {
    this.address = o.address;
    this.#timeoutMs = o.timeoutMs ?? 2000;
    this.#maxInFlight = o.maxInFlight ?? 512;
  }

  /** Send a query (its ID is replaced) and resolve with the reply, its ID restored to the query's. */
  query(msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer> {
    if (this.#closed) return Promise.reject(new Error('upstream client closed'));
    if (msg.length < HEADER) return Promise.reject(new Error('query shorter than a header'));
    return transport === 'tcp' ? this.#queryTcp(msg) : this.#queryUdp(msg);
  }

  close(): void {
    this.#closed = true;
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new Error('upstream client closed'));
      this.#pending.delete(id);
    }
    for (const s of this.#tcp) s.destroy();
    this.#udp?.close();
    this.#udp = undefined;
  }

  #socket(): dgram.Socket {
    if (this.#udp) return this.#udp;
    const s = dgram.createSocket(this.address.host.includes(':') ? 'udp6' : 'udp4');
    s.on('message', (b, rinfo) => {
      if (b.length < HEADER || rinfo.port !== this.address.port) return;
      const p = this.#pending.get(b.readUInt16BE(0));
      if (!p) return;
      this.#pending.delete(b.readUInt16BE(0));
      clearTimeout(p.timer);
      p.resolve(b);
    });
    s.on('error', () => {
      // a send error is reported to the query through its callback; nothing else to do
    });
    this.#udp = s;
    return s;
  }

  #queryUdp(msg: Buffer): Promise<Buffer> {
    if (this.#pending.size >= this.#maxInFlight) return Promise.reject(new Error('too many upstream queries in flight'));
    const origId = msg.readUInt16BE(0);
    let id = randomInt(0x10000);
    while (this.#pending.has(id)) id = (id + 1) & 0xffff;
    const out = Buffer.from(msg);
    out.writeUInt16BE(id, 0);
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`upstream ${this.address.host}:${this.address.port} did not answer in ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
      this.#pending.set(id, {
        resolve: (b) => {
          const r = Buffer.from(b);
          r.writeUInt16BE(origId, 0);
          resolve(r);
        },
        reject,
        timer,
      });
      this.#socket().send(out, this.address.port, this.address.host, (err) => {
        if (!err) return;
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(err);
      });
    });
  }

  #queryTcp(msg: Buffer): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const s = net.connect({ host: this.address.host, port: this.address.port });
      this.#tcp.add(s);
      let buf = Buffer.alloc(0);
      let done = false;
      const finish = (err: Error | undefined, b?: Buffer): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#tcp.delete(s);
        s.destroy();
        if (err) reject(err);
        else resolve(b!);
      };
      const timer = setTimeout(() => finish(new Error(`upstream ${this.address.host}:${this.address.port} (tcp) did not answer in ${this.#timeoutMs} ms`)), this.#timeoutMs);
      s.on('connect', () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(msg.length);
        s.write(Buffer.concat([len, msg]));
      });
      s.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) finish(undefined, buf.subarray(2, 2 + buf.readUInt16BE(0)));
      });
      s.on('error', (e) => finish(e));
      s.on('close', () => finish(new Error('upstream closed the TCP connection without a reply')));
    });
  }
}
