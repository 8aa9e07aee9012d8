/**
 * server/agent-relay.ts between two real HTTPS servers on loopback: an "agent" answering as the
 * node agent endpoint would (or misbehaving) and a user-facing server relaying to it. The body
 * arrives whole, a chunked reply is decoded, an agent's Status keeps its code and type, an agent
 * that dies before its Content-Length cuts the user's response instead of ending it cleanly, a reply without an HTTP head is an error before
 * anything is written, and a user who leaves closes the agent connection.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import t from 'tap';
import { relayAgentGet } from '../src/server/agent-relay.js';
import { testPki } from './helpers/api.js';
import { waitFor } from './helpers/wait.js';

const dir = await mkdtemp(join(tmpdir(), 'kubeloop-relay-'));
t.teardown(async () => {
  await rm(dir, { recursive: true, force: true });
});
const pki = await testPki(dir);
const serverTls = { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca };
const clientTls = { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey };

const BIG = Buffer.alloc(5 << 20);
for (let i = 0; i < BIG.length; i += 4) BIG.writeUInt32LE(i, i);
let agentOpen = 0;

/** the agent: HTTPS answering by path; raw TLS for the misbehaving replies */
const agent = https.createServer(serverTls, (req, res) => {
  if (req.url === '/big') res.end(BIG);
  else if (req.url === '/chunked') {
    // chunked although the request is HTTP/1.0 (an explicit Transfer-Encoding): decoded
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Transfer-Encoding': 'chunked' });
    res.write('one ');
    res.end('two');
  } else if (req.url === '/status') res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"kind":"Status","code":404}');
  else if (req.url === '/die') {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '100' });
    res.write('partial');
    setTimeout(() => res.socket?.destroy(), 50);
  } else if (req.url === '/endless') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    const tick = setInterval(() => res.write('x'), 20);
    res.once('close', () => clearInterval(tick));
  }
});
agent.on('secureConnection', (s: Socket) => {
  agentOpen++;
  s.once('close', () => agentOpen--);
});
await new Promise<void>((r) => agent.listen(0, '127.0.0.1', r));
const junkSockets = new Set<Socket>();
const junk = tls.createServer(serverTls, (s) => s.end('SSH-2.0-not-http\r\n\r\n'));
junk.on('connection', (s: Socket) => {
  junkSockets.add(s);
  s.once('close', () => junkSockets.delete(s));
});
await new Promise<void>((r) => junk.listen(0, '127.0.0.1', r));
t.teardown(async () => {
  agent.closeAllConnections();
  await new Promise((r) => agent.close(r));
  for (const s of junkSockets) s.destroy();
  await new Promise((r) => junk.close(r));
});

const errors: string[] = [];
const user = http.createServer((req: IncomingMessage, res: ServerResponse) => {
  const port = (req.url === '/junk' ? junk : agent).address() as AddressInfo;
  relayAgentGet({ host: '127.0.0.1', port: port.port, path: req.url ?? '/', tls: clientTls }, res).catch((e: Error) => {
    errors.push(e.message);
    res.writeHead(503).end(e.message);
  });
});
await new Promise<void>((r) => user.listen(0, '127.0.0.1', r));
t.teardown(async () => {
  user.closeAllConnections();
  await new Promise((r) => user.close(r));
});
const userPort = (user.address() as AddressInfo).port;

/** GET from the user server: status, type, body, and whether it ended cleanly */
const get = (path: string): Promise<{ status: number; type: string; body: Buffer; clean: boolean }> =>
  new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port: userPort, path, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      const done = (clean: boolean): void => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body: Buffer.concat(parts), clean });
      res.once('end', () => done(true));
      res.once('error', () => done(false));
      res.once('aborted', () => done(false));
    });
  });

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

t.test('the body arrives whole', async (t) => {
  const r = await get('/big');
  t.equal(r.status, 200);
  t.equal(r.body.length, BIG.length);
  t.equal(sha(r.body), sha(BIG));
  t.ok(r.clean);
});

t.test('a chunked reply is decoded', async (t) => {
  const r = await get('/chunked');
  t.equal(r.body.toString(), 'one two');
  t.ok(r.clean);
});

t.test("the agent's Status keeps its code and type", async (t) => {
  const r = await get('/status');
  t.equal(r.status, 404);
  t.equal(r.type, 'application/json');
  t.equal(r.body.toString(), '{"kind":"Status","code":404}');
});

t.test('an agent dying before its Content-Length cuts the user response', async (t) => {
  const r = await get('/die');
  t.equal(r.body.toString(), 'partial');
  t.notOk(r.clean, 'not a clean end: the user can tell the log is incomplete');
});

t.test('no HTTP head: an error before anything is written', async (t) => {
  const r = await get('/junk');
  t.equal(r.status, 503);
  t.match(errors.at(-1), /no HTTP reply/);
});

t.test('a user who leaves closes the agent connection', async (t) => {
  await waitFor(() => agentOpen === 0, { what: 'no agent connection before' });
  const req = http.get({ host: '127.0.0.1', port: userPort, path: '/endless', agent: false });
  req.on('error', () => {});
  const res = await new Promise<IncomingMessage>((r) => req.once('response', r));
  await new Promise((r) => res.once('data', r));
  t.equal(agentOpen, 1, 'one agent connection while streaming');
  req.destroy();
  await waitFor(() => agentOpen === 0, { what: `the agent connection closed (open: ${agentOpen})` });
  t.pass('closed');
});
