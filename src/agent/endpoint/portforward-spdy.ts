/**
 * Port forwarding as kubectl ≥ 1.31 asks for it: a WebSocket with the subprotocol
 * `SPDY/3.1+portforward.k8s.io` whose binary messages carry the bytes of a SPDY/3.1 session
 * (spdy.ts), the client's side of the kubelet's `portforward/httpstream.go`.
 *
 * Each forwarded connection is a pair of client-initiated streams with the same `requestid`:
 * `streamtype: error` and `streamtype: data`, both with the `port`. Each stream gets a SYN_REPLY;
 * once both are there the pod's IP:port is dialled (never another address) and its bytes go
 * both ways on the data stream. A dial or connection failure is written on the error stream.
 * Consumed bytes are acknowledged with WINDOW_UPDATE (stream and session); the pod's sending
 * waits while the WebSocket has more than HIGH_WATER bytes queued, and reading the WebSocket
 * pauses while a pod socket wants a drain.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import {
  FLAG_FIN,
  type Frame,
  FrameReader,
  FrameType,
  GoawayStatus,
  HeaderCodec,
  type HeaderMap,
  RstStatus,
  SpdyProtocolError,
  dataFrame,
  goawayFrame,
  parseIdAndValue,
  parseSynStream,
  rstStreamFrame,
  synReplyFrame,
  windowUpdateFrame,
} from './spdy.js';

export const SPDY_PORTFORWARD_PROTOCOL = 'SPDY/3.1+portforward.k8s.io';
/** the same, as a token the `ws` server accepts (endpoint/index.ts swaps them) */
export const SPDY_PROTOCOL_TOKEN = 'SPDY-3.1-portforward.k8s.io';

/** bytes of DATA per frame towards the client */
const DATA_CHUNK = 32 * 1024;
/** the WebSocket's queued bytes above which pod sockets are paused */
const HIGH_WATER = 1 << 20;

interface Pair {
  port: number;
  errorId?: number;
  dataId?: number;
  sock?: net.Socket;
  /** the client ended its side of the data stream */
  clientDone: boolean;
  /** our side of each stream is ended (FIN sent) */
  dataFin: boolean;
  errorFin: boolean;
}

export function servePortForwardSpdy(ws: WebSocket, podIP: string, log: Logger): void {
  const reader = new FrameReader();
  const codec = new HeaderCodec();
  const pairs = new Map<string, Pair>();
  /** stream id → its pair's request id */
  const streams = new Map<number, string>();
  const paused = new Set<net.Socket>();
  let lastStreamId = 0;
  let closed = false;
  let queue: Promise<void> = Promise.resolve();

  const send = (b: Buffer): void => {
    if (closed || ws.readyState !== ws.OPEN) return;
    ws.send(b, { binary: true }, () => {
      if (ws.bufferedAmount > HIGH_WATER / 2) return;
      for (const s of paused) s.resume();
      paused.clear();
    });
  };
  const fail = (err: Error): void => {
    if (closed) return;
    log.debug({ err }, 'port-forward session refused');
    send(goawayFrame(lastStreamId, GoawayStatus.PROTOCOL_ERROR));
    shutdown();
    ws.close(1002, 'SPDY protocol error');
  };
  const shutdown = (): void => {
    if (closed) return;
    closed = true;
    for (const p of pairs.values()) p.sock?.destroy();
    pairs.clear();
    codec.close();
  };

  /** ends our side of the pair's error stream, after `message` if there is one */
  const finishError = (p: Pair, message?: string): void => {
    if (p.errorId === undefined || p.errorFin) return;
    p.errorFin = true;
    if (message) send(dataFrame(p.errorId, 0, Buffer.from(message)));
    send(dataFrame(p.errorId, FLAG_FIN));
  };
  const finishData = (p: Pair): void => {
    if (p.dataId === undefined || p.dataFin) return;
    p.dataFin = true;
    send(dataFrame(p.dataId, FLAG_FIN));
  };

  const dial = (requestId: string, p: Pair): void => {
    const dataId = p.dataId!;
    const sock = net.connect({ host: podIP, port: p.port });
    p.sock = sock;
    sock.on('data', (b: Buffer) => {
      for (let at = 0; at < b.length; at += DATA_CHUNK) send(dataFrame(dataId, 0, b.subarray(at, at + DATA_CHUNK)));
      if (ws.bufferedAmount > HIGH_WATER) {
        sock.pause();
        paused.add(sock);
      }
    });
    sock.on('drain', () => ws.isPaused && ws.resume());
    sock.on('end', () => finishData(p));
    sock.on('error', (e) => finishError(p, `error forwarding port ${p.port} to pod ${podIP}: ${e.message}`));
    // the client reads the error stream to its end before it closes the connection (as the
    // kubelet does, both streams end when the pod's connection does)
    sock.on('close', () => {
      finishData(p);
      finishError(p);
      paused.delete(sock);
      if (pairs.get(requestId) === p) pairs.delete(requestId);
      if (p.errorId !== undefined) streams.delete(p.errorId);
      streams.delete(dataId);
    });
  };

  const onSynStream = async (f: Frame & { control: true }): Promise<void> => {
    const syn = parseSynStream(f.data);
    const headers = await codec.decode(syn.block);
    if (syn.streamId % 2 === 0 || syn.streamId <= lastStreamId) throw new SpdyProtocolError(`stream id ${syn.streamId} is not a new client stream`);
    lastStreamId = syn.streamId;
    const one = (h: HeaderMap, k: string): string | undefined => h.get(k)?.[0];
    const type = one(headers, 'streamtype');
    const port = Number(one(headers, 'port'));
    const requestId = one(headers, 'requestid') ?? '';
    if ((type !== 'error' && type !== 'data') || !Number.isInteger(port) || port < 1 || port > 65535) {
      send(rstStreamFrame(syn.streamId, RstStatus.REFUSED_STREAM));
      return;
    }
    const p = pairs.get(requestId) ?? { port, clientDone: false, dataFin: false, errorFin: false };
    if ((type === 'error' ? p.errorId : p.dataId) !== undefined || p.port !== port) {
      send(rstStreamFrame(syn.streamId, RstStatus.PROTOCOL_ERROR));
      return;
    }
    if (type === 'error') p.errorId = syn.streamId;
    else p.dataId = syn.streamId;
    pairs.set(requestId, p);
    streams.set(syn.streamId, requestId);
    send(synReplyFrame(syn.streamId, 0, await codec.encode(new Map())));
    if (p.errorId !== undefined && p.dataId !== undefined && !p.sock) dial(requestId, p);
  };

  const onData = (f: Frame & { control: false }): void => {
    const requestId = streams.get(f.streamId);
    const p = requestId === undefined ? undefined : pairs.get(requestId);
    if (!p) {
      send(rstStreamFrame(f.streamId, RstStatus.INVALID_STREAM));
      return;
    }
    if (f.data.length) {
      send(windowUpdateFrame(f.streamId, f.data.length));
      send(windowUpdateFrame(0, f.data.length));
    }
    if (f.streamId !== p.dataId || !p.sock) return; // the error stream carries nothing from the client
    if (f.data.length && !p.sock.write(f.data)) ws.pause();
    if (f.flags & FLAG_FIN && !p.clientDone) {
      p.clientDone = true;
      p.sock.end();
    }
  };

  const onFrame = async (f: Frame): Promise<void> => {
    if (!f.control) return onData(f);
    switch (f.type) {
      case FrameType.SYN_STREAM:
        return onSynStream(f);
      case FrameType.RST_STREAM: {
        const { id } = parseIdAndValue(f.data, 'RST_STREAM');
        const requestId = streams.get(id);
        const p = requestId === undefined ? undefined : pairs.get(requestId);
        p?.sock?.destroy();
        return;
      }
      case FrameType.PING:
        if (f.data.length !== 4) throw new SpdyProtocolError(`PING of ${f.data.length} bytes (4)`);
        send(Buffer.concat([Buffer.from([0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04]), f.data]));
        return;
      case FrameType.GOAWAY:
        shutdown();
        ws.close(1000);
        return;
      default:
        // SETTINGS, HEADERS, WINDOW_UPDATE (our sending is bounded by the WebSocket instead) and
        // unknown types: ignored, as the spec asks of a receiver
        return;
    }
  };

  ws.on('message', (raw: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
    if (closed || !isBinary) return;
    const b = Array.isArray(raw) ? Buffer.concat(raw) : Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
    let frames: Frame[];
    try {
      frames = reader.push(b);
    } catch (err) {
      return fail(err as Error);
    }
    for (const f of frames) queue = queue.then(() => (closed ? undefined : onFrame(f))).catch((err: Error) => fail(err));
  });
  ws.once('close', shutdown);
}
