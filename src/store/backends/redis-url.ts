/**
 * `redis://[user:pass@]host:port[/db]` and `rediss://…` (TLS): parsing with errors that name the
 * fix, and redaction. A password never leaves this module except inside the connection options.
 */

export interface RedisTarget {
  host: string;
  port: number;
  db: number;
  tls: boolean;
  username?: string;
  password?: string;
  /** the URL with its password replaced by `***`: the only form that may be logged or printed */
  redacted: string;
}

/**
 * The URL with any password replaced by `***` (`redis://user:***@host:6379/0`). Works on
 * strings that are not valid URLs too: whatever stands between `//` and the last `@` of the
 * authority is treated as credentials.
 */
export function redactUrl(url: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/is.exec(url);
  if (!m) return url.includes('@') ? `***@${url.slice(url.lastIndexOf('@') + 1)}` : url;
  const [, scheme, authority, rest] = m;
  const at = authority.lastIndexOf('@');
  if (at < 0) return url;
  const cred = authority.slice(0, at);
  const colon = cred.indexOf(':');
  const user = colon < 0 ? '' : cred.slice(0, colon);
  return `${scheme}${user}:***@${authority.slice(at + 1)}${rest}`;
}

const fail = (url: string, why: string): Error =>
  new Error(`--store ${redactUrl(url)}: ${why} (expected redis://[user:password@]host:port[/db] or rediss://… for TLS)`);

/**
 * Parses a store URL. `password` is used when the URL carries none (`$KUBELOOP_REDIS_PASSWORD`,
 * read by the CLI). Throws one error naming what is wrong; the message never holds the password.
 */
export function parseRedisUrl(url: string, password?: string): RedisTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw fail(url, 'not a URL');
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw fail(url, `unsupported scheme "${u.protocol.replace(/:$/, '')}"`);
  if (!u.hostname) throw fail(url, 'the host is missing');
  const port = u.port === '' ? 6379 : Number(u.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw fail(url, `port "${u.port}" is not 1-65535`);
  const dbText = u.pathname.replace(/^\//, '');
  if (dbText !== '' && !/^\d{1,5}$/.test(dbText)) throw fail(url, `database "${dbText}" is not a number (the path is the database index, e.g. /0)`);
  if (u.search || u.hash) throw fail(url, 'query and fragment are not supported');
  const decode = (s: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw fail(url, 'the credentials are not valid percent-encoding');
    }
  };
  const username = u.username ? decode(u.username) : undefined;
  const urlPassword = u.password ? decode(u.password) : undefined;
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return {
    host,
    port,
    db: dbText === '' ? 0 : Number(dbText),
    tls: u.protocol === 'rediss:',
    username,
    password: urlPassword ?? (password || undefined),
    redacted: redactUrl(url),
  };
}
