/**
 * The multiplexed streams of exec and attach over one WebSocket, as the kubelet's
 * `cri/streaming` serves them: each binary message starts with a channel byte — 0 stdin,
 * 1 stdout, 2 stderr, 3 error (a metav1.Status once the command ends), 4 resize
 * (`{"Width":…,"Height":…}`). `v5.channel.k8s.io` adds message `[255, n]`: the client closed
 * its channel n (stdin's end of file), which `v4.channel.k8s.io` cannot say.
 */
import type { WebSocket } from 'ws';

export const STDIN = 0;
export const STDOUT = 1;
export const STDERR = 2;
export const ERROR = 3;
export const RESIZE = 4;
export const CLOSE = 255;

/** exec/attach subprotocols served, best first */
export const CHANNEL_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'] as const;

/** the first protocol of `ours` the client offered (the server's preference, as upstream picks) */
export function pickProtocol(offered: ReadonlySet<string>, ours: readonly string[]): string | false {
  return ours.find((p) => offered.has(p)) ?? false;
}

export interface Resize {
  width: number;
  height: number;
}

export interface ChannelHandlers {
  stdin(data: Buffer): void;
  /** stdin reached its end (v5 close of channel 0) */
  stdinEnd(): void;
  resize(size: Resize): void;
}

/**
 * Decodes client messages to `h`; malformed resize messages are ignored, as the kubelet does.
 * Text and binary messages are alike (upstream's wsstream reads both as bytes): the Python
 * client sends a `str` written to stdin as a text message.
 */
export function readChannels(ws: WebSocket, h: ChannelHandlers): void {
  ws.on('message', (raw: Buffer | ArrayBuffer | Buffer[]) => {
    const b = Array.isArray(raw) ? Buffer.concat(raw) : Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
    if (b.length === 0) return;
    const ch = b[0];
    const data = b.subarray(1);
    if (ch === STDIN) {
      if (data.length) h.stdin(data);
    } else if (ch === RESIZE) {
      try {
        const r = JSON.parse(data.toString('utf8')) as { Width?: unknown; Height?: unknown };
        const width = Number(r.Width);
        const height = Number(r.Height);
        if (Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0 && width < 65536 && height < 65536) h.resize({ width, height });
      } catch {
        // not JSON: ignored
      }
    } else if (ch === CLOSE && data[0] === STDIN) {
      h.stdinEnd();
    }
  });
}

/** queued bytes towards a client above which the sources feeding it are paused */
export const HIGH_WATER = 1 << 20;

interface Pausable {
  pause(): unknown;
  resume(): unknown;
}

/**
 * Messages to one client from sources (process pipes, sockets, a log tail) that pause while
 * the client is behind: a client that never reads holds at most about HIGH_WATER bytes here,
 * and the command or the pod's sender waits (the kernel's pipe and socket buffers fill), as
 * with the kubelet's streams. Sources are resumed once the queue is below half of it.
 */
export class Outbox {
  readonly #ws: WebSocket;
  readonly #paused = new Set<Pausable>();

  constructor(ws: WebSocket) {
    this.#ws = ws;
  }

  /** one message on `channel` read from `from`; false when the socket is gone */
  send(channel: number, data: Buffer | string, from?: Pausable): boolean {
    const ws = this.#ws;
    if (ws.readyState !== ws.OPEN) return false;
    const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    ws.send(Buffer.concat([Buffer.from([channel]), body]), { binary: true }, () => this.#flushed());
    if (from && ws.bufferedAmount > HIGH_WATER && !this.#paused.has(from)) {
      from.pause();
      this.#paused.add(from);
    }
    return true;
  }

  #flushed(): void {
    if (!this.#paused.size || this.#ws.bufferedAmount > HIGH_WATER / 2) return;
    for (const s of this.#paused) s.resume();
    this.#paused.clear();
  }
}

/** one message on `channel`; false when the socket is gone */
export function send(ws: WebSocket, channel: number, data: Buffer | string): boolean {
  if (ws.readyState !== ws.OPEN) return false;
  const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  ws.send(Buffer.concat([Buffer.from([channel]), body]), { binary: true });
  return true;
}

/** The error channel's Status for an exit code: Success for 0, NonZeroExitCode with an ExitCode cause otherwise. */
export function exitStatus(code: number, command: readonly string[]): Record<string, unknown> {
  if (code === 0) return { metadata: {}, status: 'Success' };
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${code}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
  };
}

/** the error channel's Status for a failure that is not an exit code (the command could not start) */
export function failureStatus(message: string): Record<string, unknown> {
  return { metadata: {}, status: 'Failure', message, reason: 'InternalError', code: 500 };
}
