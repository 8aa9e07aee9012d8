/** Request/response plumbing: bodies, content types, JSON replies, Status replies. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { ApiError } from '../api/errors.js';
import { type ResourceContext, type StatusBody, toStatus } from './status.js';
import { PROTOBUF, decodeProtobuf } from './protobuf/decode.js';

/** upstream's default request body limit (3 MiB) */
export const MAX_BODY = 3 * 1024 * 1024;

export function readBody(req: IncomingMessage, limit = MAX_BODY): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new ApiError('BadRequest', `the request body is larger than ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
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

/** JSON (or YAML for the yaml media types) text → value; parse errors are 400s. */
export function parseText(body: Buffer, mt: string): unknown {
  const text = body.toString('utf8');
  if (text.trim() === '') throw new ApiError('BadRequest', 'the request body is empty');
  try {
    if (mt.includes('yaml')) return parseYaml(text);
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
