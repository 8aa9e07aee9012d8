/**
 * The port-forward SPDY session (agent/endpoint/portforward-spdy.ts) on a real loopback
 * WebSocket, driven frame by frame: a stream pair reaches a real TCP listener and both streams
 * end with it, PING is answered, bad ports are refused per stream, and malformed input ends the
 * session with GOAWAY PROTOCOL_ERROR instead of hurting the process.
 */
import net from 'node:net';
import pino from 'pino';
import t, { type Test } from 'tap';
import { WebSocket, WebSocketServer } from 'ws';
import { servePortForwardSpdy } from '../src/agent/endpoint/portforward-spdy.js';
import { FLAG_FIN, type Frame, FrameReader, FrameType, HeaderCodec, dataFrame, pingFrame, controlFrame } from '../src/agent/endpoint/spdy.js';
import { waitFor } from './helpers/wait.js';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
await new Promise((r) => wss.once('listening', r));
t.teardown(() => new Promise((r) => wss.close(r)));
wss.on('connection', (ws) => servePortForwardSpdy(ws, '127.0.0.1', pino({ level: 'silent' })));

// the "pod": echoes what it gets, then ends
const pod = net.createServer((c) => c.pipe(c));
await new Promise<void>((r) => pod.listen(0, '127.0.0.1', r));
t.teardown(() => new Promise((r) => pod.close(r)));
const podPort = (pod.address() as net.AddressInfo).port;

interface Peer {
  ws: WebSocket;
  frames: Frame[];
  closeCode: () => number | undefined;
  codec: HeaderCodec;
  syn(id: number, headers: Record<string, string>): Promise<void>;
}

async function peer(t: Test): Promise<Peer> {
  const ws = new WebSocket(`ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}`);
  const reader = new FrameReader();
  const frames: Frame[] = [];
  let code: number | undefined;
  ws.on('message', (b: Buffer) => frames.push(...reader.push(b)));
  ws.on('close', (c) => (code = c));
  await new Promise((r) => ws.once('open', r));
  const codec = new HeaderCodec();
  t.teardown(() => {
    codec.close();
    ws.terminate();
  });
  return {
    ws,
    frames,
    closeCode: () => code,
    codec,
    async syn(id, headers) {
      const block = await codec.encode(new Map(Object.entries(headers).map(([k, v]) => [k, [v]])));
      const fixed = Buffer.alloc(10);
      fixed.writeUInt32BE(id, 0);
      ws.send(controlFrame(FrameType.SYN_STREAM, 0, Buffer.concat([fixed, block])));
    },
  };
}

const controls = (p: Peer, type: number): Buffer[] => p.frames.flatMap((f) => (f.control && f.type === type ? [f.data] : []));
const dataOn = (p: Peer, id: number): Array<{ flags: number; data: string }> =>
  p.frames.flatMap((f) => (!f.control && f.streamId === id ? [{ flags: f.flags, data: f.data.toString() }] : []));

t.test('a stream pair reaches the pod; both streams end with its connection', async (t) => {
  const p = await peer(t);
  await p.syn(1, { streamtype: 'error', port: String(podPort), requestid: '0' });
  await p.syn(3, { streamtype: 'data', port: String(podPort), requestid: '0' });
  await waitFor(() => controls(p, FrameType.SYN_REPLY).length === 2, { what: 'two SYN_REPLYs' });
  t.same(controls(p, FrameType.SYN_REPLY).map((d) => d.readUInt32BE(0)), [1, 3], 'each stream is answered');
  p.ws.send(dataFrame(3, 0, Buffer.from('hello ')));
  p.ws.send(dataFrame(3, FLAG_FIN, Buffer.from('pod')));
  await waitFor(() => dataOn(p, 1).some((f) => f.flags & FLAG_FIN), { what: 'the error stream ending' });
  t.equal(dataOn(p, 3).map((f) => f.data).join(''), 'hello pod', 'the pod echoed the bytes on the data stream');
  t.ok(dataOn(p, 3).at(-1)!.flags & FLAG_FIN, 'the data stream ends (FIN) with the connection');
  t.same(dataOn(p, 1).map((f) => f.data), [''], 'the error stream ends without a message');
  const updates = controls(p, FrameType.WINDOW_UPDATE).map((d) => [d.readUInt32BE(0), d.readUInt32BE(4)]);
  t.same(updates, [[3, 6], [0, 6], [3, 3], [0, 3]], 'consumed bytes acknowledged per stream and for the session');
});

t.test('PING is echoed; a bad port or stream type is refused for that stream only', async (t) => {
  const p = await peer(t);
  p.ws.send(pingFrame(5));
  await p.syn(1, { streamtype: 'data', port: '0', requestid: '1' });
  await p.syn(3, { streamtype: 'other', port: '80', requestid: '2' });
  await waitFor(() => controls(p, FrameType.RST_STREAM).length === 2 && controls(p, FrameType.PING).length === 1, { what: 'the answers' });
  t.same(controls(p, FrameType.PING).map((d) => d.readUInt32BE(0)), [5]);
  t.same(controls(p, FrameType.RST_STREAM).map((d) => [d.readUInt32BE(0), d.readUInt32BE(4)]), [[1, 3], [3, 3]], 'REFUSED_STREAM each');
  t.equal(p.closeCode(), undefined, 'the session goes on');
});

t.test('a closed port: the dial error on the error stream', async (t) => {
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const p = await peer(t);
  await p.syn(1, { streamtype: 'error', port: String(port), requestid: '0' });
  await p.syn(3, { streamtype: 'data', port: String(port), requestid: '0' });
  await waitFor(() => dataOn(p, 1).some((f) => f.flags & FLAG_FIN), { what: 'the error stream ending' });
  t.match(dataOn(p, 1).map((f) => f.data).join(''), new RegExp(`^error forwarding port ${port} to pod 127\\.0\\.0\\.1: connect ECONNREFUSED`));
});

for (const [what, bytes] of [
  ['a SPDY/2 frame', Buffer.from('8002000600000004000000 01'.replace(/ /g, ''), 'hex')],
  ['a SYN_STREAM whose header block is not zlib', controlFrame(FrameType.SYN_STREAM, 0, Buffer.from('000000010000000000000102030405', 'hex'))],
  ['a frame over the size limit', Buffer.from('00000001 00 200000'.replace(/ /g, ''), 'hex')],
] as const) {
  t.test(`${what}: GOAWAY PROTOCOL_ERROR, the session closes`, async (t) => {
    const p = await peer(t);
    p.ws.send(bytes);
    await waitFor(() => p.closeCode() !== undefined, { what: 'the close' });
    t.equal(p.closeCode(), 1002, 'closed as a protocol error');
    t.same(controls(p, FrameType.GOAWAY).map((d) => d.readUInt32BE(4)), [1], 'GOAWAY with PROTOCOL_ERROR first');
  });
}
