// @ts-check
/**
 * The DNS stage's ceiling (bench/dns.ts): a Node UDP server in a process of its own answering
 * every datagram with one fixed reply, only the ID patched, sent on the socket's libuv handle as
 * kubeloop's DNS does (no dgram layer on the send, no allocation per datagram). No Node server
 * can answer faster; kubeloop's DNS does the lookup on top.
 *
 *   node bench/udp-echo.mjs PORT REPLY_HEX        (binds 127.0.0.1:PORT, prints "ready", exits on SIGTERM/SIGINT)
 */
import dgram from 'node:dgram';

const port = Number(process.argv[2]);
const canned = Buffer.from(process.argv[3] ?? '', 'hex');
if (!(port > 0) || canned.length < 12) {
  console.error('usage: node bench/udp-echo.mjs PORT REPLY_HEX');
  process.exit(2);
}
const socket = dgram.createSocket('udp4');
socket.bind(port, '127.0.0.1', () => {
  const sym = Object.getOwnPropertySymbols(socket).find((x) => x.description === 'state symbol');
  /** @type {any} */
  const handle = sym ? /** @type {any} */ (socket)[sym]?.handle : undefined;
  /** @type {any} */
  const { SendWrap } = /** @type {any} */ (process).binding('udp_wrap');
  if (!handle || typeof SendWrap !== 'function') {
    console.error('no udp_wrap handle on this Node');
    process.exit(1);
  }
  let req = new SendWrap();
  /** @type {Buffer[]} */
  let list = [];
  let reply = Buffer.from(canned);
  /** @type {(nread: number, h: unknown, m: Buffer, r: { port: number; address: string }) => void} */
  handle.onmessage = (nread, _h, m, r) => {
    if (nread < 2) return;
    reply[0] = m[0];
    reply[1] = m[1];
    list[0] = reply;
    if (handle.send(req, list, 1, r.port, r.address, false) === 0) {
      // pending: the kernel holds this reply; answer into a fresh one
      req.list = list;
      req = new SendWrap();
      list = [];
      reply = Buffer.from(canned);
    }
  };
  process.stdout.write('ready\n');
});
const stop = () => socket.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
