/**
 * The API's front door, as request filters: each returns the `Status` a request is refused with,
 * or undefined to let it through. Order (outermost first): `checkHost`, `checkOrigin`,
 * `authenticate`.
 *
 * - Host: a browser tricked by DNS rebinding sends the attacker's name in `Host`; only the
 *   names and addresses the API serves (its certificate's SANs) are accepted.
 * - Origin: only browsers send it; the API serves no browser, so any cross-origin request,
 *   preflight or not, is refused and no `Access-Control-*` header is ever sent.
 * - Credentials: a client certificate signed by the cluster CA (verified by TLS against that CA
 *   only) or the bearer token, compared in constant time. Without one, 401 — except the
 *   health and version endpoints upstream also leaves open (system:public-info-viewer).
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { type StatusBody, failure } from './status.js';

export interface User {
  name: string;
  groups: string[];
}

/** The host part of a Host header value, lower-case, without brackets or port. */
export function hostOf(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') > 0 ? h.indexOf(']') : undefined);
  const colon = h.indexOf(':');
  // more than one colon and no brackets: a bare IPv6 address (not valid in Host, but unambiguous)
  if (colon >= 0 && h.indexOf(':', colon + 1) < 0) return h.slice(0, colon);
  return h;
}

/** Refuses a request whose Host names something the API does not serve (DNS rebinding). */
export function checkHost(req: IncomingMessage, allowed: ReadonlySet<string>): StatusBody | undefined {
  const header = req.headers.host;
  if (header === undefined) return undefined; // HTTP/1.0 clients; browsers always send Host
  const host = hostOf(header);
  if (allowed.has(host)) return undefined;
  return failure('Forbidden', `host "${host}" is not an address of this API server (served: ${[...allowed].join(', ')}): connect with one of those, as the kubeconfig does`, 403);
}

/** Refuses every request a browser marks as cross-origin (CORS is never allowed). */
export function checkOrigin(req: IncomingMessage): StatusBody | undefined {
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  return failure('Forbidden', `cross-origin requests are refused (Origin: ${String(origin).slice(0, 200)}): the Kubernetes API is for kubectl and client libraries, not web pages`, 403);
}

export interface Authenticator {
  /** bearer token accepted in addition to client certificates */
  token?: string;
}

const PUBLIC = new Set(['/healthz', '/livez', '/readyz', '/version']);

/** The user a request authenticates as, or undefined. */
export function authenticate(req: IncomingMessage, a: Authenticator): User | undefined {
  const sock = req.socket as Partial<TLSSocket>;
  if (sock.encrypted && sock.authorized && sock.getPeerCertificate) {
    const c = sock.getPeerCertificate();
    const list = (v: string | string[] | undefined): string[] => (Array.isArray(v) ? v : v ? [v] : []);
    const [name] = list(c.subject?.CN);
    if (name) return { name, groups: list(c.subject?.O) };
  }
  if (a.token) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (m) {
      const got = Buffer.from(m[1]);
      const want = Buffer.from(a.token);
      if (got.length === want.length && timingSafeEqual(got, want)) return { name: 'kubeloop-token', groups: ['system:masters'] };
    }
  }
  return undefined;
}

/**
 * 401 for a request without a valid credential, unless the API runs without credentials at all
 * (the plain-HTTP test mode without a token) or the path is one of the public health endpoints.
 */
export function checkAuthenticated(req: IncomingMessage, a: Authenticator & { required: boolean }, pathname: string): StatusBody | undefined {
  if (!a.required) return undefined;
  if (authenticate(req, a)) return undefined;
  if ((req.method === 'GET' || req.method === 'HEAD') && PUBLIC.has(pathname)) return undefined;
  return failure('Unauthorized', 'Unauthorized: a client certificate signed by the cluster CA or a bearer token is required (use the kubeconfig kubeloop writes to its state dir)', 401);
}
