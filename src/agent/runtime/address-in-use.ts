/**
 * Container habits: code written for a container binds all interfaces (`''`, `0.0.0.0`, `::`),
 * which is harmless in a pod's own network namespace. Here every pod shares the host's network,
 * so the second replica's bind fails with EADDRINUSE. This finds that failure in the tail of a
 * container's log and says what to do instead.
 */

export interface AddressInUse {
  /** the address the program tried, when its message names it ('' for "all interfaces") */
  address?: string;
  port?: number;
  /** the log line that says so */
  line: string;
}

const PATTERNS: ReadonlyArray<{ re: RegExp; addr?: (m: RegExpExecArray) => { address: string; port: number } }> = [
  // Go: `listen tcp 0.0.0.0:8080: bind: address already in use`, `listen tcp :8080: …`, `listen tcp [::]:8080: …`
  { re: /listen (?:tcp|udp)[46]? (\[[^\]]*\]|[^\s:]*):(\d+): bind: address already in use/i, addr: (m) => ({ address: m[1], port: Number(m[2]) }) },
  // Node: `Error: listen EADDRINUSE: address already in use 0.0.0.0:8080` (`:::8080` for ::)
  { re: /EADDRINUSE:? (?:address already in use )?(\S*):(\d+)/, addr: (m) => ({ address: m[1], port: Number(m[2]) }) },
  // Python: `OSError: [Errno 98] Address already in use` (48 on BSD/macOS); C: perror's `bind: Address already in use`
  { re: /\[Errno (?:98|48)\] Address already in use/ },
  { re: /EADDRINUSE|address already in use/i },
];

const WILDCARDS = new Set(['', '0.0.0.0', '::', '*']);

/** The last EADDRINUSE report in a log tail, if any; a line naming the address wins over one that does not. */
export function findAddressInUse(tail: string): AddressInUse | undefined {
  const lines = tail.split('\n');
  for (const p of PATTERNS) {
    for (let i = lines.length - 1; i >= 0; i--) {
      const m = p.re.exec(lines[i]);
      if (!m) continue;
      const a = p.addr?.(m);
      const line = lines[i].trim();
      return a ? { line, address: a.address.replace(/^\[(.*)\]$/, '$1'), port: a.port } : { line };
    }
  }
  return undefined;
}

/**
 * The status message and event of a container that died of EADDRINUSE: what happened, why here
 * and not in a cluster, and the fix (bind $POD_IP), with the address and port when known.
 */
export function addressInUseMessage(found: AddressInUse, podIP: string): string {
  const port = found.port !== undefined ? String(found.port) : '<port>';
  const tried = found.address === undefined ? '' : ` on ${found.address.includes(':') ? `[${found.address}]` : found.address || '*'}:${port}`;
  const head = `the container exited: address already in use${tried} ("${found.line.slice(0, 200)}")`;
  if (found.address === podIP) {
    return `${head}: another process of this pod already listens on ${podIP}:${port}; use another port or stop the other process`;
  }
  const what = found.address === undefined || WILDCARDS.has(found.address) ? 'all interfaces' : found.address;
  return (
    `${head}: pods share this machine's network (there is no network namespace per pod), so a program bound to ${what} ` +
    `takes the port for every pod, and the second replica cannot have it. Bind the pod's own address instead: ` +
    `$POD_IP (${podIP})${found.port !== undefined ? `:${port}` : ''}, e.g. Python HTTPServer((os.environ['POD_IP'], ${port}), …), ` +
    `Node server.listen(${port}, process.env.POD_IP), Go http.ListenAndServe(os.Getenv("POD_IP")+":${port}", …)`
  );
}

/** `findAddressInUse` + `addressInUseMessage`, or undefined when the tail shows no EADDRINUSE. */
export function addressInUseHint(tail: string, podIP: string): string | undefined {
  const found = findAddressInUse(tail);
  return found ? addressInUseMessage(found, podIP) : undefined;
}
