/**
 * Node's own libuv handles (`tcp_wrap`, `stream_wrap`, `udp_wrap`), typed: the objects
 * `net.Socket`, `net.Server` and `dgram.Socket` are built on. The proxy's fast TCP data path and
 * the DNS server's UDP fast path use them directly, without the stream / event layers on top (see
 * agent/proxy/tcp.ts and dns/server.ts for why).
 *
 * They are reached through `process.binding`, an undocumented, deprecated API (DEP0111): it is
 * an optimisation, chosen once per process by `chooseDataPath` only where the bindings load
 * without a warning or an error; everywhere else the `net` path (agent/proxy/tcp-net.ts, dgram
 * in dns/server.ts) serves. Nothing here touches `process.binding` before that choice.
 */
import { getSystemErrorName } from 'node:util';

/** A `TCP` handle (libuv `uv_tcp_t`): a connected socket or a listening one. */
export interface UvTcp {
  /** `onread(arrayBuffer)`: the byte count (or a negative errno / UV_EOF) is in `streamState[READ]` */
  onread: (this: never, ab: ArrayBuffer | undefined) => unknown;
  /** listening handles: `onconnection(status, clientHandle)` */
  onconnection: (this: never, status: number, client: UvTcp | undefined) => void;
  readStart(): number;
  readStop(): number;
  /** every read lands in this buffer; `onread` runs at once, before the next read */
  useUserBuffer(buf: Uint8Array): void;
  /** 0 or a negative errno; `streamState[LAST_WRITE_ASYNC]` says whether `req` is pending */
  writeBuffer(req: UvReq, buf: Uint8Array): number;
  shutdown(req: UvReq): number;
  close(cb?: (this: never) => void): void;
  /** close with RST (SO_LINGER 0); fails (non-zero) after `shutdown` */
  reset(cb?: (this: never) => void): number;
  setNoDelay(on: boolean): number;
  getpeername(out: { address?: string; port?: number; family?: string }): number;
  connect(req: UvReq, host: string, port: number): number;
  connect6(req: UvReq, host: string, port: number): number;
  bind(host: string, port: number): number;
  bind6(host: string, port: number, flags: number): number;
  listen(backlog: number): number;
}

/** A request object (`WriteWrap`, `ShutdownWrap`, `TCPConnectWrap`); C++ calls `oncomplete` on it. */
export interface UvReq {
  oncomplete: ((this: never, ...args: never[]) => void) | null;
  [k: string]: unknown;
}

export interface TcpWrapBinding {
  TCP: new (type: number) => UvTcp;
  TCPConnectWrap: new () => UvReq;
  constants: { SOCKET: number; SERVER: number; UV_TCP_IPV6ONLY: number };
}

export interface StreamWrapBinding {
  WriteWrap: new () => UvReq;
  ShutdownWrap: new () => UvReq;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
  streamBaseState: Int32Array;
}

export interface Bindings {
  tcp: TcpWrapBinding;
  stream: StreamWrapBinding;
  SendWrap: new () => UvReq;
  /** libuv's end-of-stream "error" */
  UV_EOF: number;
}

/** The libuv handle inside a bound `dgram.Socket`. */
export interface UvUdp {
  /** `onmessage(nread, handle, buf, rinfo)`, `this` the handle */
  onmessage: (this: UvUdp, nread: number, handle: UvUdp, buf: Buffer, rinfo: { address: string; port: number; family: string }) => void;
  /** > 0: sent at once (bytes + 1); 0: pending, `req` in use until it completes; < 0: errno */
  send(req: UvReq, list: Buffer[], count: number, port: number, address: string, hasCallback: boolean): number;
}

/** `uv`: Node's libuv handles (this file); `net`: `node:net` / `node:dgram` only. */
export type DataPath = 'uv' | 'net';
/** `auto`: `uv` where it loads cleanly (see `chooseDataPath`), else `net` */
export type DataPathPreference = 'auto' | DataPath;
export const DATA_PATH_PREFERENCES: readonly DataPathPreference[] = ['auto', 'uv', 'net'];

export interface DataPathChoice {
  path: DataPath;
  /** why, in words (logged once at start) */
  reason: string;
}

type Probe = { bindings: Bindings; why?: undefined } | { bindings?: undefined; why: string };
let probed: Probe | undefined;

/**
 * The data path for `prefer`. `auto` takes `uv` only where the bindings load without a warning
 * or an error, decided without making one:
 *
 * - under the permission model (`--permission`), `process.binding` throws ERR_ACCESS_DENIED;
 * - with `--pending-deprecation`, Node wraps `process.binding` to print DEP0111 (and
 *   `--throw-deprecation` would turn that into a crash): the wrapper is recognised by its name;
 * - any other warning while loading (a Node line that runtime-deprecates these modules) is held
 *   back — `process.emitWarning` is swapped out for the few synchronous calls — and means `net`.
 *
 * The probe runs once per process. `uv` when it is not available throws, naming the reason
 * and the fix.
 */
export function chooseDataPath(prefer: DataPathPreference = 'auto'): DataPathChoice {
  if (prefer === 'net') return { path: 'net', reason: 'asked for (--data-path net or KUBELOOP_DATA_PATH=net)' };
  const p = (probed ??= probe());
  if (p.bindings) return { path: 'uv', reason: prefer === 'uv' ? 'asked for' : "Node's libuv bindings load cleanly" };
  if (prefer === 'uv') throw new Error(`--data-path uv: ${p.why}; use --data-path auto (or net)`);
  return { path: 'net', reason: p.why };
}

function probe(): Probe {
  const proc = process as unknown as { permission?: unknown; binding?: unknown };
  if (proc.permission !== undefined) return { why: "Node's permission model is on, which denies process.binding" };
  const binding = proc.binding;
  if (typeof binding !== 'function') return { why: `Node ${process.version} has no process.binding` };
  if (binding.name !== 'binding') return { why: 'process.binding would print a deprecation warning (DEP0111, --pending-deprecation)' };
  const emit = process.emitWarning;
  let warned: string | undefined;
  process.emitWarning = ((w: string | Error) => {
    warned ??= typeof w === 'string' ? w : w.message;
  }) as typeof process.emitWarning;
  let b: Bindings | undefined;
  try {
    b = load(binding as (name: string) => unknown);
  } catch (err) {
    return { why: `process.binding failed: ${(err as Error).message}` };
  } finally {
    process.emitWarning = emit;
  }
  if (warned !== undefined) return { why: `process.binding warns on Node ${process.version}: ${warned}` };
  if (!b) return { why: `Node ${process.version}'s tcp_wrap/stream_wrap/udp_wrap bindings are not the shape this code knows` };
  return { bindings: b };
}

function load(binding: (name: string) => unknown): Bindings | undefined {
  const tcp = binding('tcp_wrap') as TcpWrapBinding;
  const stream = binding('stream_wrap') as StreamWrapBinding;
  const udp = binding('udp_wrap') as { SendWrap?: unknown };
  const uvb = binding('uv') as { UV_EOF?: unknown };
  const proto = tcp.TCP.prototype as unknown as Record<string, unknown>;
  const methods = ['readStart', 'readStop', 'useUserBuffer', 'writeBuffer', 'shutdown', 'close', 'reset', 'connect', 'bind', 'listen'];
  if (!methods.every((m) => typeof proto[m] === 'function')) return undefined;
  if (typeof stream.WriteWrap !== 'function' || !(stream.streamBaseState instanceof Int32Array)) return undefined;
  if (typeof stream.kReadBytesOrError !== 'number' || typeof stream.kLastWriteWasAsync !== 'number') return undefined;
  if (typeof udp.SendWrap !== 'function' || typeof uvb.UV_EOF !== 'number') return undefined;
  return { tcp, stream, SendWrap: udp.SendWrap as new () => UvReq, UV_EOF: uvb.UV_EOF };
}

/** The bindings; only after `chooseDataPath` picked `uv` (a programming error otherwise). */
export function uvBindings(): Bindings {
  if (!probed?.bindings) throw new Error('the uv data path was not chosen (chooseDataPath) in this process');
  return probed.bindings;
}

/**
 * The handle of a bound `dgram.Socket` (dgram keeps it under a private symbol), with a
 * `SendWrap` constructor for `send`, on the `uv` path; undefined when `uv` was not chosen or this
 * Node's dgram is not the shape known here (callers then keep to dgram's API).
 */
export function udpHandle(s: object): { handle: UvUdp; SendWrap: new () => UvReq } | undefined {
  const b = probed?.bindings;
  if (!b) return undefined;
  const sym = Object.getOwnPropertySymbols(s).find((x) => x.description === 'state symbol');
  const state = sym ? (s as Record<symbol, { handle?: unknown } | undefined>)[sym] : undefined;
  const handle = state?.handle as UvUdp | undefined;
  if (!handle || typeof handle.send !== 'function' || typeof handle.onmessage !== 'function') return undefined;
  return { handle, SendWrap: b.SendWrap };
}

/** An `Error` like the ones `net` throws: `code` is the errno name (`EADDRINUSE`), `errno` the number. */
export function uvError(errno: number, syscall: string, address?: string, port?: number): NodeJS.ErrnoException {
  let code: string;
  try {
    code = getSystemErrorName(errno);
  } catch {
    code = `E${-errno}`;
  }
  const where = address === undefined ? '' : ` ${address.includes(':') ? `[${address}]` : address}:${port}`;
  const err: NodeJS.ErrnoException = new Error(`${syscall} ${code}${where}`);
  err.code = code;
  err.errno = errno;
  err.syscall = syscall;
  return err;
}
