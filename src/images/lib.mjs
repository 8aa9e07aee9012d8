// @ts-check
import dns from 'node:dns';
import net from 'node:net';
/**
 * Shared plumbing of the built-in images. Each image is a plain `node` program started by the
 * node agent with the pod's environment: it listens on `POD_IP` and on every port in
 * `KUBELOOP_CONTAINER_PORTS`, and exits 0 within a second of SIGTERM.
 */

/** @typedef {{ close(): void } & Partial<{ closeAllConnections(): void }>} Closable */

export const pod = Object.freeze({
  name: process.env.POD_NAME ?? '',
  namespace: process.env.POD_NAMESPACE ?? '',
  ip: process.env.POD_IP || '127.0.0.1',
  node: process.env.NODE_NAME ?? '',
});

/** `pod=<name> namespace=<ns> ip=<ip> node=<node>`: the line every built-in image answers with first. */
export const podLine = `pod=${pod.name} namespace=${pod.namespace} ip=${pod.ip} node=${pod.node}`;

/**
 * Ports from a comma-separated list (`8080,9090`), ignoring what is not a port number.
 * @param {string | undefined} text
 * @returns {number[]}
 */
export function parsePorts(text) {
  /** @type {number[]} */
  const out = [];
  for (const part of (text ?? '').split(',')) {
    const n = Number(part.trim());
    if (part.trim() !== '' && Number.isInteger(n) && n > 0 && n < 65536 && !out.includes(n)) out.push(n);
  }
  return out;
}

/** The declared TCP containerPorts of this container. */
export const tcpPorts = parsePorts(process.env.KUBELOOP_CONTAINER_PORTS);
/** The declared UDP containerPorts of this container. */
export const udpPorts = parsePorts(process.env.KUBELOOP_CONTAINER_UDP_PORTS);

/**
 * `--name=value`, `-name=value`, `--name value` from argv.
 * @param {string[]} argv
 * @param {string} name
 * @returns {string | undefined}
 */
export function flag(argv, name) {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    for (const p of [`--${name}`, `-${name}`]) {
      if (a === p && i + 1 < argv.length && !argv[i + 1].startsWith('-')) return argv[i + 1];
      if (a.startsWith(`${p}=`)) return a.slice(p.length + 1);
    }
  }
  return undefined;
}

/**
 * One line on stderr that names the fix, then exit 1 (the runtime restarts the container).
 * @param {string} image
 * @param {string} addr
 * @param {NodeJS.ErrnoException} err
 * @returns {never}
 */
export function failListen(image, addr, err) {
  const port = Number(/:(\d+)(?:\/\w+)?$/.exec(addr)?.[1]);
  if (err.code === 'EACCES' && port < 1024) {
    process.stderr.write(
      `${image}: cannot listen on ${addr}: permission denied — ports below 1024 need privilege: ` +
        `run kubeloop with CAP_NET_BIND_SERVICE (or sysctl net.ipv4.ip_unprivileged_port_start=${port}), ` +
        `or declare a containerPort >= 1024\n`,
    );
  } else if (err.code === 'EADDRINUSE') {
    process.stderr.write(`${image}: cannot listen on ${addr}: address already in use\n`);
  } else {
    process.stderr.write(`${image}: cannot listen on ${addr}: ${err.message}\n`);
  }
  process.exit(1);
}

/**
 * Listens on `pod.ip:port`; resolves once listening, exits the program (status 1) when it cannot.
 * @param {string} image
 * @param {import('node:net').Server} server
 * @param {number} port
 * @returns {Promise<void>}
 */
export function listen(image, server, port) {
  const addr = `${pod.ip}:${port}`;
  return new Promise((resolve) => {
    server.once('error', (/** @type {NodeJS.ErrnoException} */ err) => failListen(image, addr, err));
    server.listen({ host: pod.ip, port }, () => {
      process.stdout.write(`${image}: listening on ${addr}\n`);
      resolve();
    });
  });
}

/**
 * On SIGTERM/SIGINT: log it, close every server and connection, exit 0 (forced after 800 ms).
 * @param {string} image
 * @param {Closable[]} closables
 */
export function exitOnSignal(image, closables) {
  let done = false;
  /** @param {NodeJS.Signals} sig */
  const onSignal = (sig) => {
    if (done) return;
    done = true;
    process.stdout.write(`${image}: received ${sig}, shutting down\n`);
    for (const c of closables) {
      try {
        c.close();
        c.closeAllConnections?.();
      } catch {
        // already closed
      }
    }
    setTimeout(() => process.exit(0), 800).unref();
    setImmediate(() => process.exit(0));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  watchLifeline(() => onSignal('SIGTERM'));
}

/**
 * The node agent hands every container a pipe as fd `$KUBELOOP_LIFELINE_FD`; it reaches
 * end-of-file when the daemon is gone (even SIGKILLed). Built-in images stop then.
 * @param {() => void} onGone
 */
export function watchLifeline(onGone) {
  const fd = Number(process.env.KUBELOOP_LIFELINE_FD);
  if (!Number.isInteger(fd) || fd < 3) return;
  try {
    const s = new net.Socket({ fd, readable: true, writable: false });
    s.on('end', onGone);
    s.on('error', () => undefined);
    s.resume();
    s.unref();
  } catch {
    // not a pipe (started by hand): nothing to watch
  }
}

/**
 * Pods are processes of this machine and would use the host's resolver. Built-in images resolve
 * through the cluster DNS instead, as a pod's /etc/resolv.conf would make them: the search list
 * `<ns>.svc.<zone> svc.<zone> <zone>` with ndots 5, then the host's resolver for everything else.
 * Installed as `dns.lookup`, which `net`, `http` and `fetch`-less clients use.
 */
function installClusterResolver() {
  const server = process.env.KUBELOOP_DNS;
  const zone = process.env.KUBELOOP_CLUSTER_DOMAIN || 'cluster.local';
  if (!server) return;
  const resolver = new dns.promises.Resolver({ timeout: 1000, tries: 2 });
  try {
    resolver.setServers([server]);
  } catch {
    return;
  }
  const hostLookup = dns.lookup;
  /** @param {string} name */
  const candidates = (name) => {
    if (name.endsWith('.')) return [name.slice(0, -1)];
    const search = [`${pod.namespace || 'default'}.svc.${zone}`, `svc.${zone}`, zone].map((d) => `${name}.${d}`);
    return name.split('.').length - 1 >= 5 ? [name, ...search] : [...search, name];
  };
  /** @type {any} */
  const lookup = (/** @type {string} */ hostname, /** @type {any} */ options, /** @type {any} */ callback) => {
    const cb = typeof options === 'function' ? options : callback;
    const opts = typeof options === 'function' ? {} : typeof options === 'number' ? { family: options } : options ?? {};
    if (net.isIP(hostname) || hostname === 'localhost' || opts.family === 6) return hostLookup(hostname, options, callback);
    (async () => {
      for (const name of candidates(hostname)) {
        if (!name.endsWith(zone)) continue;
        try {
          const ips = await resolver.resolve4(name);
          if (ips.length) return ips;
        } catch {
          // NXDOMAIN / NODATA: the next candidate
        }
      }
      return undefined;
    })().then(
      (ips) => {
        if (!ips) return hostLookup(hostname, options, callback);
        if (opts.all) return cb(null, ips.map((address) => ({ address, family: 4 })));
        cb(null, ips[0], 4);
      },
      () => hostLookup(hostname, options, callback),
    );
  };
  dns.lookup = lookup;
}
installClusterResolver();
