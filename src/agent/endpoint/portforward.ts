/**
 * Port forwarding over a channel WebSocket, as the kubelet's `portforward/websocket.go` serves
 * it (the official Python client's protocol): for the i-th requested port, channel 2i carries
 * data and 2i+1 errors; the first message the server sends on each channel is the port
 * (little-endian uint16). Each port is one TCP connection to the pod's IP — never another address.
 */
import net from 'node:net';
import type { WebSocket } from 'ws';
import { Outbox, send } from './channels.js';

/** the `ports` (or `port`) query values: comma-separated or repeated, each 1–65535 */
export function parsePorts(q: URLSearchParams): number[] {
  const raw = [...q.getAll('ports'), ...q.getAll('port')].flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean);
  if (!raw.length) throw new Error('ports: Required value: name at least one port (?ports=8080)');
  return raw.map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`ports: Invalid value: "${s}": must be a port number between 1 and 65535`);
    return n;
  });
}

const portPrefix = (port: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(port);
  return b;
};

/** Streams until the client leaves; each port's connection to `podIP` is opened at once. */
export function servePortForward(ws: WebSocket, podIP: string, ports: readonly number[]): void {
  const sockets: net.Socket[] = [];
  // a client that does not read pauses the pod's connections, one that sends faster than the pod reads pauses itself
  const out = new Outbox(ws);
  ports.forEach((port, i) => {
    const data = 2 * i;
    const error = data + 1;
    send(ws, data, portPrefix(port));
    send(ws, error, portPrefix(port));
    const s = net.connect({ host: podIP, port });
    sockets[i] = s;
    s.on('data', (b: Buffer) => out.send(data, b, s));
    s.on('error', (e) => send(ws, error, `error forwarding port ${port} to pod ${podIP}: ${e.message}`));
    s.on('close', () => {
      if (ws.readyState === ws.OPEN && sockets.every((x) => x.destroyed)) ws.close(1000);
    });
  });
  // text messages are bytes too, as upstream's wsstream reads them
  ws.on('message', (raw: Buffer | ArrayBuffer | Buffer[]) => {
    const b = Array.isArray(raw) ? Buffer.concat(raw) : Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
    if (b.length === 0) return;
    const ch = b[0];
    if (ch % 2 !== 0) return;
    const s = sockets[ch / 2];
    if (s && !s.destroyed && b.length > 1 && !s.write(b.subarray(1))) {
      ws.pause();
      s.once('drain', () => ws.resume());
    }
  });
  ws.once('close', () => {
    for (const s of sockets) s.destroy();
  });
}
