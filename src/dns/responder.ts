/**
 * Query → reply bytes. Answers are looked up once per (type, class, lower-case name), encoded,
 * and kept until the view changes; a query then costs a copy and a few patched bytes (ID,
 * flags, the question's case, OPT). Forwarding and ExternalName chasing are the only async
 * paths and are never cached. No dns2 here: the server feeds it Queries from either decoder.
 */
import type { Logger } from 'pino';
import { lookup } from './lookup.js';
import type { DnsView, LookupOptions } from './lookup.js';
import { RCODE, TYPE, CLASS } from './records.js';
import type { Answer } from './records.js';
import { buildQuery, encodeAnswer, errorReply, lowerWire, nameToWire, parseReply, patch, replyLimit, wireNameToString, OUR_UDP_SIZE, HEADER } from './wire.js';
import type { Query } from './wire.js';
import type { Upstream } from './forward.js';
import { randomInt } from 'node:crypto';
import { AnswerCache } from './answer-cache.js';
import type { SendReply } from './answer-cache.js';

export interface ResponderOptions {
  view: DnsView;
  log: Logger;
  zone: string;
  ttl: number;
  nsAddress?: string;
  upstream?: Upstream;
  /** cached answers kept before the cache is emptied (a flood of random names cannot grow it) */
  cacheSize?: number;
}

export type Transport = 'udp' | 'tcp';

export class Responder {
  readonly #view: DnsView;
  readonly #log: Logger;
  readonly #lookup: LookupOptions;
  readonly #upstream: Upstream | undefined;
  readonly #cache: AnswerCache;

  constructor(o: ResponderOptions) {
    this.#view = o.view;
    this.#log = o.log;
    this.#upstream = o.upstream;
    this.#lookup = { zone: o.zone, ttl: o.ttl, nsAddress: o.nsAddress, upstream: o.upstream !== undefined };
    this.#cache = new AnswerCache(o.cacheSize ?? 20000);
  }

  /** Drop every cached answer: the data behind them changed. */
  invalidate(): void {
    this.#cache.clear();
  }

  get cached(): number {
    return this.#cache.size;
  }

  /**
   * The UDP hot path: answer a plain query datagram from the cache without decoding it (see
   * answer-cache.ts). False when it needs `respond()`.
   */
  replyCached(query: Buffer, send: SendReply): boolean {
    return this.#cache.reply(query, send);
  }

  /**
   * The reply to one query, sized for its transport. Synchronous for everything answered from
   * the zone; a Promise only when an upstream is involved. Throws only on a bug (an answer that
   * cannot be encoded); the server turns that into SERVFAIL.
   */
  respond(q: Query, transport: Transport): Buffer | Promise<Buffer> {
    const limit = replyLimit(q, transport === 'tcp');
    if (q.edns && q.edns.version > 0) return errorReply(q, RCODE.BADVERS);
    if (!this.#view.synced()) return this.#reply(q, limit, { rcode: RCODE.SERVFAIL, authoritative: false, answer: [], authority: [], additional: [] });
    const hit = this.#cache.get(q.qname, q.qtype, q.qclass);
    if (hit) return patch(hit, q, limit);
    const answer = lookup(this.#view, wireNameToString(q.qname), q.qtype, q.qclass, this.#lookup);
    if (answer.forward) return this.#forward(q, transport, limit);
    if (answer.chase) return this.#chase(q, answer, transport, limit);
    const encoded = this.#encode(q, answer);
    this.#cache.set(q.qname, q.qtype, q.qclass, encoded);
    return patch(encoded, q, limit);
  }

  /** A SERVFAIL reply to a query whose answer failed (the server's last resort). */
  servfail(q: Query): Buffer {
    return errorReply(q, RCODE.SERVFAIL);
  }

  #encode(q: Query, a: Answer): Buffer {
    return encodeAnswer(a, { qname: lowerWire(q.qname), qtype: q.qtype, qclass: q.qclass, ra: this.#upstream !== undefined });
  }

  #reply(q: Query, limit: number, a: Answer): Buffer {
    return patch(this.#encode(q, a), q, limit);
  }

  /** Relay an out-of-zone query to the upstream and its reply back, sized for the client. */
  async #forward(q: Query, transport: Transport, limit: number): Promise<Buffer> {
    const up = this.#upstream!;
    const edns = q.edns ? { size: Math.min(Math.max(q.edns.size, 512), OUR_UDP_SIZE), version: 0, do: q.edns.do } : undefined;
    const msg = buildQuery({ id: q.id, qname: q.qname, qtype: q.qtype, qclass: q.qclass, rd: q.rd, cd: q.cd, edns });
    try {
      let reply = await up.query(msg, 'udp');
      if (transport === 'tcp' && reply.length > 2 && reply[2] & 0x02) reply = await up.query(msg, 'tcp');
      if (reply.length <= limit) return reply;
      // too big for this client: header + question, TC set
      const out = Buffer.from(reply.subarray(0, HEADER + q.qname.length + 4));
      out[2] |= 0x02;
      out.fill(0, 6, 12);
      return out;
    } catch (err) {
      this.#log.debug({ err, upstream: `${up.address.host}:${up.address.port}` }, 'forwarding failed');
      return this.#reply(q, limit, { rcode: RCODE.SERVFAIL, authoritative: false, answer: [], authority: [], additional: [] });
    }
  }

  /** An ExternalName pointing out of the zone: the CNAME, then whatever the upstream answers for its target. */
  async #chase(q: Query, a: Answer, transport: Transport, limit: number): Promise<Buffer> {
    const up = this.#upstream!;
    const { name, type } = a.chase!;
    const answer: Answer = { ...a, answer: [...a.answer] };
    try {
      const msg = buildQuery({ id: randomInt(0x10000), qname: nameToWire(name), qtype: type, qclass: CLASS.IN, edns: { size: OUR_UDP_SIZE, version: 0, do: false } });
      let reply = await up.query(msg, 'udp');
      if (reply[2] & 0x02) reply = await up.query(msg, 'tcp');
      const parsed = parseReply(reply);
      if (parsed.rcode === RCODE.NOERROR) answer.answer.push(...parsed.answers.filter((r) => r.type === type || r.type === TYPE.CNAME || type === TYPE.ANY));
    } catch (err) {
      // the CNAME alone still tells the client where to go
      this.#log.debug({ err, target: name }, 'upstream lookup of an ExternalName target failed');
    }
    return patch(this.#encode(q, answer), q, limit);
  }
}
