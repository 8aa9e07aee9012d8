/**
 * URL → what a request is about, as the apiserver's RequestInfoFactory reads paths:
 *
 *     /api/v1[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]]
 *     /apis/{group}/{version}[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]]
 *     /api/v1/namespaces/{name}[/status]              (the Namespace object itself)
 *     /api/v1/watch/...                               (legacy watch paths)
 *
 * Routing reads the path exactly as sent, never dot-segment normalised: WHATWG `URL` would turn
 * `configmaps/..` (or `%2e%2e`) into the parent path and so into another object; here `..` stays
 * a name, which `checkPathName` refuses. The raw path is split on `/` first and each segment is
 * percent-decoded after, so an encoded `/` (`team%2fconfigmaps`) stays inside its segment: a
 * namespace or name holding it is a 400, any other segment matches no route (404). (Go's
 * RequestInfoFactory splits the decoded URL.Path, which reads `namespaces/team%2fconfigmaps`
 * as the ConfigMaps of `team`: a DELETE there deleted all of them.)
 */
import { ApiError } from '../api/errors.js';

export interface ResourceRoute {
  group: string;
  version: string;
  namespace?: string;
  resource: string;
  name?: string;
  subresource?: string;
  /** `/watch/` path prefix */
  watchPath: boolean;
}

const HEX = /^[0-9a-fA-F]{2}$/;

/**
 * The path of a request target (`req.url`: origin-form, or absolute-form from proxies), as sent:
 * NOT decoded (segments are decoded one by one, `decodeSegment`), its escapes checked; a
 * malformed escape is a 400, as Go's net/http answers it.
 */
export function requestPath(target: string): string {
  let raw = target;
  if (!raw.startsWith('/')) {
    const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*/.exec(raw);
    raw = m ? raw.slice(m[0].length) || '/' : raw;
    if (!raw.startsWith('/')) throw new ApiError('BadRequest', `invalid request target ${JSON.stringify(target.slice(0, 100))}: it must start with "/"`);
  }
  const q = raw.search(/[?#]/);
  if (q >= 0) raw = raw.slice(0, q);
  for (let i = raw.indexOf('%'); i >= 0; i = raw.indexOf('%', i + 3)) {
    if (!HEX.test(raw.slice(i + 1, i + 3))) throw new ApiError('BadRequest', `invalid URL escape ${JSON.stringify(raw.slice(i, i + 3))} in the request path: write a literal "%" as %25`);
  }
  return raw;
}

/** One raw path segment percent-decoded (its escapes were checked by `requestPath`). */
export function decodeSegment(raw: string): string {
  if (!raw.includes('%')) return raw;
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const ch = raw.charCodeAt(i);
    if (ch === 0x25 && HEX.test(raw.slice(i + 1, i + 3))) {
      bytes.push(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (ch < 0x80) {
      bytes.push(ch);
    } else {
      for (const b of Buffer.from(raw[i], 'utf8')) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * The route of a raw path (`requestPath`), or undefined when it is not a resource path: split
 * on `/`, then each segment decoded; a decoded `/` in the group, version, resource, subresource
 * or a keyword segment matches no route, in a namespace or name it is a 400. The path starts
 * with exactly one `/`, and an empty segment anywhere (`//api/v1/…`, `configmaps//x`) matches
 * no route: the apiserver's director hands `//api/…` to no API (404), and a client that joined
 * an empty name or namespace into a path must not reach another object. A trailing slash after
 * a collection (`configmaps/`) is refused too: upstream's router would serve the collection
 * there, but a client that built the path from an empty name (`DELETE …/configmaps/` + '')
 * would then delete every object of the collection instead of one.
 */
export function parseResourcePath(path: string): ResourceRoute | undefined {
  if (!path.startsWith('/') || hasEmptySegment(path)) return undefined;
  const parts = path.slice(1).split('/').map(decodeSegment);
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 3) {
    group = '';
    version = parts[1];
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 4) {
    group = parts[1];
    version = parts[2];
    rest = parts.slice(3);
  } else {
    return undefined;
  }
  let watchPath = false;
  if (rest[0] === 'watch') {
    watchPath = true;
    rest = rest.slice(1);
  }
  let namespace: string | undefined;
  // `namespaces/{ns}/{resource}...` scopes to a namespace; `namespaces[/{name}[/status]]` is the kind itself
  if (rest[0] === 'namespaces' && rest.length >= 3 && rest[2] !== 'status' && rest[2] !== 'finalize') {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  if (rest.length === 0 || rest.length > 3) return undefined;
  const [resource, name, subresource] = rest;
  if ([group, version, resource, subresource].some((seg) => seg?.includes('/'))) return undefined;
  if (namespace?.includes('/')) checkPathName(namespace);
  if (name?.includes('/')) checkPathName(name);
  return { group, version, namespace, resource, name, subresource, watchPath };
}

/** a `//` anywhere, or a trailing `/` after a segment: a path no route of the API matches */
export function hasEmptySegment(path: string): boolean {
  return path.includes('//') || (path.length > 1 && path.endsWith('/'));
}

/**
 * Upstream's path.IsValidPathSegmentName as its registry key functions apply it to the name
 * of a named request: `.`, `..` and names holding `/` or `%` are a 400 before any storage
 * access ("Name parameter invalid").
 */
export function checkPathName(name: string): void {
  let why: string[] = [];
  if (name === '.' || name === '..') why = [`may not be '${name}'`];
  else {
    if (name.includes('/')) why.push("may not contain '/'");
    if (name.includes('%')) why.push("may not contain '%'");
  }
  if (why.length) throw new ApiError('BadRequest', `Name parameter invalid: ${JSON.stringify(name)}: ${why.join(';')}`);
}
