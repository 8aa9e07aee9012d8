/**
 * Node's own libuv handles (`tcp_wrap`, `stream_wrap`, `udp_wrap`), typed: the objects
 * `net.Socket`, `net.Server` and `dgram.Socket` are built on. The proxy's TCP data path and the
 * DNS server's UDP fast path use them directly, without the stream / event layers on top (see
 * agent/proxy/tcp.ts and dns/server.ts for why). They are reached through `process.binding`, which Node 20
 * and 22 allow for these modules (DEP0111 is documentation-only there). A Node without them
 * fails the first listener with an error that says so, rather than proxying wrongly.
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

interface TcpWrapBinding {
  TCP: new (type: number) => UvTcp;
  TCPConnectWrap: new () => UvReq;
  constants: { SOCKET: number; SERVER: number; UV_TCP_IPV6ONLY: number };
}

interface StreamWrapBinding {
  WriteWrap: new () => UvReq;
  ShutdownWrap: new () => UvReq;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
  streamBaseState: Int32Array;
}

interface Bindings {
  tcp: TcpWrapBinding;
  stream: StreamWrapBinding;
}

/** The libuv handle inside a bound `dgram.Socket`. */
export interface UvUdp {
  /** `onmessage(nread, handle, buf, rinfo)`, `this` the handle */
  onmessage: (this: UvUdp, nread: number, handle: UvUdp, buf: Buffer, rinfo: { address: string; port: number; family: string }) => void;
  /** > 0: sent at once (bytes + 1); 0: pending, `req` in use until it completes; < 0: errno */
  send(req: UvReq, list: Buffer[], count: number, port: number, address: string, hasCallback: boolean): number;
}

/**
 * The handle of a bound `dgram.Socket` (dgram keeps it under a private symbol), with a
 * `SendWrap` constructor for `send`; undefined when this Node does not have them (callers then
 * keep to dgram's API).
 */
export function udpHandle(s: object): { handle: UvUdp; SendWrap: new () => UvReq } | undefined {
  try {
    const sym = Object.getOwnPropertySymbols(s).find((x) => x.description === 'state symbol');
    const state = sym ? (s as Record<symbol, { handle?: unknown } | undefined>)[sym] : undefined;
    const handle = state?.handle as UvUdp | undefined;
    const { SendWrap } = (process as unknown as { binding(name: string): { SendWrap?: new () => UvReq } }).binding('udp_wrap');
    if (!handle || typeof handle.send !== 'function' || typeof handle.onmessage !== 'function' || typeof SendWrap !== 'function') return undefined;
    return { handle, SendWrap };
  } catch {
    return undefined;
  }
}

function load(): Bindings | undefined {
  try {
    const binding = (process as unknown as { binding(name: string): unknown }).binding;
    const tcp = binding('tcp_wrap') as TcpWrapBinding;
    const stream = binding('stream_wrap') as StreamWrapBinding;
    const proto = tcp.TCP.prototype as unknown as Record<string, unknown>;
    const methods = ['readStart', 'readStop', 'useUserBuffer', 'writeBuffer', 'shutdown', 'close', 'reset', 'connect', 'bind', 'listen'];
    if (!methods.every((m) => typeof proto[m] === 'function')) return undefined;
    if (typeof stream.WriteWrap !== 'function' || !(stream.streamBaseState instanceof Int32Array)) return undefined;
    if (typeof stream.kReadBytesOrError !== 'number' || typeof stream.kLastWriteWasAsync !== 'number') return undefined;
    return { tcp, stream };
  } catch {
    return undefined;
  }
}

const bindings = load();

function need(): Bindings {
  if (!bindings) {
    throw new Error(
      `the proxy needs Node's tcp_wrap and stream_wrap bindings (Node 20 and 22 have them); Node ${process.version} does not: run kubeloop with Node 20 or 22`,
    );
  }
  return bindings;
}

export const uv = {
  get TCP() {
    return need().tcp.TCP;
  },
  get TCPConnectWrap() {
    return need().tcp.TCPConnectWrap;
  },
  get WriteWrap() {
    return need().stream.WriteWrap;
  },
  get ShutdownWrap() {
    return need().stream.ShutdownWrap;
  },
  get constants() {
    return need().tcp.constants;
  },
};

/** `streamBaseState`, and the indexes read after a read callback / a write */
export const streamState: Int32Array = bindings?.stream.streamBaseState ?? new Int32Array(8);
export const READ = bindings?.stream.kReadBytesOrError ?? 0;
export const LAST_WRITE_ASYNC = bindings?.stream.kLastWriteWasAsync ?? 0;
/** libuv's end-of-stream "error" */
export const UV_EOF: number = uvEof();

function uvEof(): number {
  try {
    const v = (process as unknown as { binding(name: string): { UV_EOF?: unknown } }).binding('uv').UV_EOF;
    return typeof v === 'number' ? v : -4095;
  } catch {
    return -4095;
  }
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
