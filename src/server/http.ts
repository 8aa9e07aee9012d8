/** Request/response plumbing: bodies, content types, JSON replies, Status replies. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError } from '../api/errors.js';
import { MAX_DEPTH, checkJsonDepth, loadYaml } from './body-limits.js';
import { type ResourceContext, type StatusBody, toStatus } from './status.js';
import { PROTOBUF, decodeProtobuf } from './protobuf/decode.js';

/** upstream's default request body limit (the kube-apiserver's MaxRequestBodyBytes, 3 MiB) */
export const MAX_BODY = 3 * 1024 * 1024;

/** upstream's answer to a body over the limit (apiserver limitedReadBody): 413 */
export const tooLarge = (limit: number): ApiError => new ApiError('RequestEntityTooLarge', `Request entity too large: limit is ${limit}`);

/**
 * The request body, at most `limit` bytes. Over it: a 413 ApiError, and the rest of the body
 * is read and dropped (discardBody) so the client sees the answer (sent on `res` by the
 * caller's error path) instead of a reset.
 */
export function readBody(req: IncomingMessage, res: ServerResponse, limit = MAX_BODY): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > limit) {
        req.off('data', onData);
        chunks.length = 0;
        discardBody(req, res);
        reject(tooLarge(limit));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** the most of a refused body read and dropped before the connection is closed anyway */
export const DISCARD_MAX_BYTES = 256 * 1024 * 1024;
export const DISCARD_MAX_MS = 10_000;

/**
 * Reads and drops the rest of a request body that will not be used; call before answering
 * on `res`. A client may still be sending when it is answered, and closing a socket with
 * unread data makes the kernel send a reset that can discard the answer from the client's
 * buffers: so the body is drained (memory stays flat) and the connection is kept open until
 * it is — then closed if the client asked for that. Past DISCARD_MAX_BYTES or DISCARD_MAX_MS
 * it is closed anyway.
 */
export function discardBody(req: IncomingMessage, res: ServerResponse): void {
  if (req.readableEnded || req.destroyed) return;
  const closeAfter = !res.shouldKeepAlive;
  // Node would otherwise close (and so reset) the connection as soon as the answer is written
  res.shouldKeepAlive = true;
  let seen = 0;
  const stop = (): void => {
    clearTimeout(timer);
    req.socket?.destroy();
  };
  const timer = setTimeout(stop, DISCARD_MAX_MS);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > DISCARD_MAX_BYTES) stop();
  });
  req.once('end', () => {
    clearTimeout(timer);
    if (!closeAfter) return;
    if (res.writableFinished) req.socket?.end();
    else res.once('finish', () => req.socket?.end());
  });
  req.once('close', () => clearTimeout(timer));
  req.once('error', () => clearTimeout(timer));
  req.resume();
}

/** The media type of a Content-Type header, lower-case, without parameters (no validation: see `inputMediaType`). */
export function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0].trim().toLowerCase();
}

const TSPECIALS = '()<>@,;:\\"/[]?=';
const isTokenChar = (ch: string): boolean => ch > ' ' && ch < '\x7f' && !TSPECIALS.includes(ch);

/** the longest run of token characters at the start of `s`, and the rest */
function token(s: string): [string, string] {
  let i = 0;
  while (i < s.length && isTokenChar(s[i])) i++;
  return [s.slice(0, i), s.slice(i)];
}

/** a parameter value (a token or a quoted string) at the start of `s`, or undefined when there is none */
function paramValue(s: string): [string, string] | undefined {
  if (!s.startsWith('"')) {
    const [v, rest] = token(s);
    return v ? [v, rest] : undefined;
  }
  let v = '';
  for (let i = 1; i < s.length; i++) {
    const ch = s[i];
    if (ch === '"') return [v, s.slice(i + 1)];
    if (ch === '\\' && i + 1 < s.length) v += s[++i];
    else if (ch === '\r' || ch === '\n') return undefined;
    else v += ch;
  }
  return undefined;
}

/**
 * A Content-Type header as Go's mime.ParseMediaType reads it (which the apiserver's
 * NegotiateInputSerializer uses): the lower-cased `type/subtype`, or undefined when the header
 * does not parse — no type, a type without subtype or with text after it, a parameter without
 * `name=value`, a duplicate parameter. Trailing semicolons are allowed, as in Go.
 */
export function parseMediaType(header: string): string | undefined {
  const semi = header.indexOf(';');
  const base = (semi < 0 ? header : header.slice(0, semi)).trim().toLowerCase();
  const [type, afterType] = token(base);
  if (!type) return undefined;
  // Go also accepts a lone token (a disposition); no media type of ours is one, so it is no match
  if (afterType !== '') {
    if (!afterType.startsWith('/')) return undefined;
    const [sub, afterSub] = token(afterType.slice(1));
    if (!sub || afterSub !== '') return undefined;
  }
  let rest = semi < 0 ? '' : header.slice(semi);
  const seen = new Set<string>();
  for (;;) {
    rest = rest.trimStart();
    if (rest === '') break;
    if (!rest.startsWith(';')) return undefined;
    const [rawKey, afterKey] = token(rest.slice(1).trimStart());
    if (!rawKey) {
      if (rest.trim() === ';') break;
      return undefined;
    }
    const eq = afterKey.trimStart();
    if (!eq.startsWith('=')) return undefined;
    const value = paramValue(eq.slice(1).trimStart());
    if (!value) return undefined;
    const key = rawKey.toLowerCase();
    if (seen.has(key)) return undefined;
    seen.add(key);
    rest = value[1];
  }
  return base;
}

/** what create and update bodies may be (upstream's serializers with CBOR off, as 1.32 ships) */
export const INPUT_MEDIA_TYPES: readonly string[] = Object.freeze(['application/json', 'application/yaml', PROTOBUF]);

/** upstream's NewUnsupportedMediaTypeError: a 415 listing what is accepted */
export const unsupportedMediaType = (accepted: readonly string[]): ApiError =>
  new ApiError('UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`);

/**
 * The media type a body is read as, as upstream's NegotiateInputSerializer picks it: no
 * Content-Type (or an empty one) is JSON; one that does not parse, or is not in `accepted`,
 * is a 415 and the body is not read as anything.
 */
export function inputMediaType(header: string | undefined, accepted: readonly string[] = INPUT_MEDIA_TYPES): string {
  if (header === undefined || header.trim() === '') return accepted[0];
  const mt = parseMediaType(header);
  if (mt === undefined || !accepted.includes(mt)) throw unsupportedMediaType(accepted);
  return mt;
}

/** Decodes a create/update body (JSON, YAML or protobuf) to an object. */
export function decodeObject(body: Buffer, contentType: string | undefined): Record<string, unknown> {
  const mt = inputMediaType(contentType);
  if (mt === PROTOBUF) return decodeProtobuf(body);
  const v = parseText(body, mt);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new ApiError('BadRequest', "couldn't get version/kind; json parse error: the body is not a JSON object");
  }
  return v as Record<string, unknown>;
}

/** JSON (or YAML for the yaml media types) text → value; parse errors, depth and YAML expansion over the limits are 400s. */
export function parseText(body: Buffer, mt: string): unknown {
  const text = body.toString('utf8');
  if (text.trim() === '') throw new ApiError('BadRequest', 'the request body is empty');
  if (mt.includes('yaml')) return loadYaml(text, { maxDepth: MAX_DEPTH, maxBytes: MAX_BODY });
  checkJsonDepth(text);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError('BadRequest', `couldn't get version/kind; json parse error: ${(e as Error).message}`);
  }
}

export function sendJson(res: ServerResponse, code: number, body: unknown, contentType = 'application/json', headers: Record<string, string | string[]> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private', ...headers });
  res.end(text);
}

export function sendStatus(res: ServerResponse, status: StatusBody, headers: Record<string, string | string[]> = {}): void {
  const retry = status.details?.retryAfterSeconds;
  // as the apiserver: a Status with retryAfterSeconds is also a Retry-After header (client-go waits that long)
  if (retry !== undefined) headers = { 'Retry-After': String(retry), ...headers };
  sendJson(res, status.code, status, 'application/json', headers);
}

export function sendError(res: ServerResponse, err: unknown, ctx?: ResourceContext): StatusBody {
  const st = toStatus(err, ctx);
  sendStatus(res, st);
  return st;
}

/** `Warning: 299 - "<text>"` header values (kubectl prints `Warning: <text>`). */
export function warningHeaders(warnings: readonly string[]): Record<string, string[]> {
  return warnings.length ? { Warning: warnings.map((w) => `299 - ${JSON.stringify(w)}`) } : {};
}
