/**
 * URL → what a request is about, as the apiserver's RequestInfoFactory reads paths:
 *
 *     /api/v1[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]]
 *     /apis/{group}/{version}[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]]
 *     /api/v1/namespaces/{name}[/status]              (the Namespace object itself)
 *     /api/v1/watch/...                               (legacy watch paths)
 */
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

export function parseResourcePath(pathname: string): ResourceRoute | undefined {
  const parts = pathname.split('/').filter((p) => p !== '').map(decodeURIComponent);
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
  return { group, version, namespace, resource: rest[0], name: rest[1], subresource: rest[2], watchPath };
}
