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

/** The media type of a Content-Type header, lower-case, without parameters. */
export function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0].trim().toLowerCase();
}

const UNKNOWN_FORMAT =
  'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf';

/** Decodes a create/update body (JSON, YAML or protobuf) to an object. */
export function decodeObject(body: Buffer, contentType: string | undefined): Record<string, unknown> {
  const mt = mediaType(contentType) || 'application/json';
  let v: unknown;
  if (mt === 'application/json' || mt === 'application/yaml' || mt === 'text/yaml' || mt === 'application/apply-patch+yaml') {
    v = parseText(body, mt);
  } else if (mt === PROTOBUF) {
    return decodeProtobuf(body);
  } else {
    throw new ApiError('UnsupportedMediaType', UNKNOWN_FORMAT);
  }
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
