/**
 * Node's own libuv stream handles (`tcp_wrap`, `stream_wrap`), typed: the objects `net.Socket`
 * and `net.Server` are built on. The proxy's data path uses them directly, without the stream
 * layer on top (see tcp.ts for why). They are reached through `process.binding`, which Node 20
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
