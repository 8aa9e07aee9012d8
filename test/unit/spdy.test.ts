/**
 * SPDY/3.1 framing (agent/endpoint/spdy.ts) over byte tables: frames as the spec lays them out,
 * the two SYN_STREAMs kubectl 1.32 sent for one port-forward connection (captured with -v=8:
 * its zlib stream, primed with the SPDY/3 dictionary, spans both blocks), and malformed input.
 */
import t from 'tap';
import zlib from 'node:zlib';
import {
  FLAG_FIN,
  type Frame,
  FrameReader,
  FrameType,
  HeaderCodec,
  MAX_FRAME,
  dataFrame,
  decodeHeaderBlock,
  encodeHeaderBlock,
  goawayFrame,
  parseIdAndValue,
  parseSynStream,
  pingFrame,
  rstStreamFrame,
  synReplyFrame,
  windowUpdateFrame,
} from '../../src/agent/endpoint/spdy.js';
import { SPDY3_DICTIONARY } from '../../src/agent/endpoint/spdy-dictionary.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex');
const show = (b: Buffer): string => b.toString('hex');
const adler32 = (b: Buffer): number => {
  let a = 1;
  let c = 0;
  for (const x of b) {
    a = (a + x) % 65521;
    c = (c + a) % 65521;
  }
  return ((c << 16) | a) >>> 0;
};

t.test('frames out, byte for byte', async (t) => {
  const table: Array<[string, Buffer, string]> = [
    ['DATA with FIN', dataFrame(1, FLAG_FIN, Buffer.from('hi')), '00000001 01 000002 6869'],
    ['empty DATA with FIN', dataFrame(3, FLAG_FIN), '00000003 01 000000'],
    ['DATA, stream id top bit dropped', dataFrame(0x80000005, 0, Buffer.from('x')), '00000005 00 000001 78'],
    ['SYN_REPLY', synReplyFrame(3, 0, hex('aabb')), '80030002 00 000006 00000003 aabb'],
    ['RST_STREAM CANCEL', rstStreamFrame(7, 5), '80030003 00 000008 00000007 00000005'],
    ['PING', pingFrame(2), '80030006 00 000004 00000002'],
    ['GOAWAY PROTOCOL_ERROR', goawayFrame(9, 1), '80030007 00 000008 00000009 00000001'],
    ['WINDOW_UPDATE session', windowUpdateFrame(0, 65536), '80030009 00 000008 00000000 00010000'],
    ['WINDOW_UPDATE stream, delta top bit dropped', windowUpdateFrame(1, 0xffffffff), '80030009 00 000008 00000001 7fffffff'],
  ];
  for (const [what, got, want] of table) t.equal(show(got), show(hex(want)), what);
});

t.test('frames in: split anywhere, several per push', async (t) => {
  const bytes = Buffer.concat([pingFrame(1), dataFrame(1, FLAG_FIN, Buffer.from('hello')), rstStreamFrame(3, 5)]);
  const want = [
    { control: true, type: FrameType.PING, flags: 0, data: '00000001' },
    { control: false, streamId: 1, flags: FLAG_FIN, data: Buffer.from('hello').toString('hex') },
    { control: true, type: FrameType.RST_STREAM, flags: 0, data: '0000000300000005' },
  ];
  const norm = (fs: Frame[]): unknown[] => fs.map((f) => ({ ...f, data: f.data.toString('hex') }));
  for (const step of [1, 3, 8, 13, bytes.length]) {
    const r = new FrameReader();
    const got: Frame[] = [];
    for (let at = 0; at < bytes.length; at += step) got.push(...r.push(bytes.subarray(at, at + step)));
    t.same(norm(got), want, `${step} byte(s) at a time`);
  }
  const r = new FrameReader();
  t.same(r.push(hex('80030006 00 0000')), [], 'an incomplete header waits');
  t.same(norm(r.push(hex('04 0000002a'))), [{ control: true, type: FrameType.PING, flags: 0, data: '0000002a' }], 'and completes');
});

t.test('frames in: refused', async (t) => {
  t.throws(() => new FrameReader().push(hex('80020006 00 000004 00000001')), /SPDY version 2 is not served/, 'SPDY/2');
  const big = Buffer.alloc(8);
  big.writeUInt32BE(1, 0);
  big.writeUIntBE(MAX_FRAME + 1, 5, 3);
  t.throws(() => new FrameReader().push(big), /over the 1048576-byte limit/, 'a frame over the limit, before its bytes arrive');
  t.throws(() => parseSynStream(hex('00000001 00000000 00')), /SYN_STREAM of 9 bytes/);
  t.throws(() => parseSynStream(hex('00000000 00000000 0000')), /stream 0/);
  t.throws(() => parseIdAndValue(hex('00000001'), 'RST_STREAM'), /RST_STREAM of 4 bytes/);
  t.same(parseIdAndValue(hex('80000007 00000005'), 'RST_STREAM'), { id: 7, value: 5 }, 'the reserved bit is not part of the id');
});

t.test('name/value blocks', async (t) => {
  const h = new Map([
    ['streamtype', ['data']],
    ['x-two', ['a', 'b']],
  ]);
  const raw = encodeHeaderBlock(h);
  t.equal(show(raw), show(hex('00000002 0000000a 73747265616d74797065 00000004 64617461 00000005 782d74776f 00000003 610062')), 'count, then length-prefixed names and NUL-joined values');
  t.same([...decodeHeaderBlock(raw)], [...h], 'and back');
  for (const [what, b, msg] of [
    ['truncated count', hex('000000'), /inside a length/],
    ['a name past the end', hex('00000001 00000009 6162'), /inside a name or value/],
    ['an empty name', hex('00000001 00000000 00000000'), /empty header name/],
    ['a name twice', hex('00000002 00000001 61 00000000 00000001 61 00000000'), /appears twice/],
    ['bytes after the last pair', hex('00000000 ff'), /1 bytes after/],
  ] as const) {
    t.throws(() => decodeHeaderBlock(b), msg, what);
  }
});

t.test("kubectl 1.32's SYN_STREAMs for one connection decode through one zlib context", async (t) => {
  const errorSyn = hex('80030001 0000003e 00000001 00000000 0000 78f9e3c6a7c202253a060606ce2248fc6482d22da3013 8e59514a526e6420b17d65450d0430aea22709eb034303000000000ffff'.replace(/ /g, ''));
  const dataSyn = hex('80030001 0000001c 00000003 00000000 0000 826a46550a2a8712b1a844b302000000ffff');
  const frames = new FrameReader().push(Buffer.concat([errorSyn, dataSyn]));
  t.equal(frames.length, 2);
  const codec = new HeaderCodec();
  t.teardown(() => codec.close());
  const got = [];
  for (const f of frames) {
    if (!f.control) throw new Error('a data frame');
    t.equal(f.type, FrameType.SYN_STREAM);
    const s = parseSynStream(f.data);
    got.push({ id: s.streamId, headers: Object.fromEntries(await codec.decode(s.block)) });
  }
  t.same(got, [
    { id: 1, headers: { requestid: ['0'], streamtype: ['error'], port: ['9000'] } },
    { id: 3, headers: { streamtype: ['data'], port: ['9000'], requestid: ['0'] } },
  ]);
  // the second block alone is a continuation: a fresh context cannot read it
  const fresh = new HeaderCodec();
  t.teardown(() => fresh.close());
  const second = frames[1];
  await t.rejects(fresh.decode(parseSynStream(second.data).block), { name: 'SpdyProtocolError' }, 'a block is not readable without the ones before it');
});

t.test('our blocks: primed with the dictionary, each a sync-flushed continuation', async (t) => {
  const codec = new HeaderCodec();
  t.teardown(() => codec.close());
  const a = await codec.encode(new Map());
  const b = await codec.encode(new Map([['port', ['8080']]]));
  t.equal(a[0], 0x78, 'a zlib stream');
  t.ok(a[1] & 0x20, 'FDICT set');
  t.equal(a.readUInt32BE(2), adler32(SPDY3_DICTIONARY), "the dictionary's id (its Adler-32)");
  t.equal(show(a.subarray(-4)), '0000ffff', 'sync flushed');
  t.equal(show(b.subarray(-4)), '0000ffff');
  // a peer's inflater (another context) reads both in order
  const peer = zlib.createInflate({ dictionary: SPDY3_DICTIONARY });
  t.teardown(() => peer.close());
  const out: Buffer[] = [];
  peer.on('data', (c: Buffer) => out.push(c));
  for (const block of [a, b]) {
    await new Promise<void>((resolve) => {
      peer.write(block);
      peer.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve());
    });
  }
  t.equal(show(Buffer.concat(out)), show(Buffer.concat([encodeHeaderBlock(new Map()), encodeHeaderBlock(new Map([['port', ['8080']]]))])));
  t.equal(SPDY3_DICTIONARY.length, 1423, 'the SPDY/3 dictionary is 1,423 bytes');
  t.equal(SPDY3_DICTIONARY.subarray(0, 15).toString('latin1'), '\0\0\0\x07options\0\0\0\x04', 'and starts with "options"');
  t.equal(SPDY3_DICTIONARY.subarray(-6).toString('latin1'), 'enq=0.', 'and ends with "enq=0."');
});
