/**
 * Name and format checks with upstream's message texts
 * (k8s.io/apimachinery/pkg/util/validation, ~v1.33). Each `is*` returns the list of problems;
 * an empty list means valid. Also a small IP/CIDR parser with Go `net.ParseIP` semantics
 * (IPv4 leading zeros accepted as decimal, as `netutils.ParseIPSloppy`), kept here so `api/`
 * depends on nothing.
 */

export const maxLenError = (n: number): string => `must be no more than ${n} characters`;
export const emptyError = (): string => 'must be non-empty';
export const inclusiveRangeError = (lo: number, hi: number): string => `must be between ${lo} and ${hi}, inclusive`;

/** `msg (e.g. 'a',  or 'b', regex used for validation is 're')` — the double space is upstream's. */
export function regexError(msg: string, re: string, ...examples: string[]): string {
  if (examples.length === 0) return `${msg} (regex used for validation is '${re}')`;
  let s = `${msg} (e.g. `;
  examples.forEach((ex, i) => {
    if (i > 0) s += ' or ';
    s += `'${ex}', `;
  });
  return `${s}regex used for validation is '${re}')`;
}

const DNS1123_LABEL_FMT = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS1123_LABEL_MSG =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT = `${DNS1123_LABEL_FMT}(\\.${DNS1123_LABEL_FMT})*`;
const DNS1123_SUBDOMAIN_MSG =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT = '[a-z]([-a-z0-9]*[a-z0-9])?';
const DNS1035_LABEL_MSG =
  "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QNAME_FMT = '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]';
const QNAME_MSG =
  "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT = `(${QNAME_FMT})?`;
const LABEL_VALUE_MSG =
  "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const ENV_VAR_FMT = '[-._a-zA-Z][-._a-zA-Z0-9]*';
const ENV_VAR_MSG =
  "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";
const PERCENT_FMT = '[0-9]+%';
const PERCENT_MSG = "a valid percent string must be a numeric string followed by an ending '%'";
const HTTP_HEADER_FMT = '[-A-Za-z0-9]+';
const HTTP_HEADER_MSG = "a valid HTTP header must consist of alphanumeric characters or '-'";

const anchored = (fmt: string): RegExp => new RegExp(`^${fmt}$`);
const DNS1123_LABEL_RE = anchored(DNS1123_LABEL_FMT);
const DNS1123_SUBDOMAIN_RE = anchored(DNS1123_SUBDOMAIN_FMT);
const DNS1035_LABEL_RE = anchored(DNS1035_LABEL_FMT);
const QNAME_RE = anchored(QNAME_FMT);
const LABEL_VALUE_RE = anchored(LABEL_VALUE_FMT);
const ENV_VAR_RE = anchored(ENV_VAR_FMT);
const PERCENT_RE = anchored(PERCENT_FMT);
const HTTP_HEADER_RE = anchored(HTTP_HEADER_FMT);

/** Go's `len(s)` counts bytes; names are ASCII when valid, but lengths must match upstream for others too. */
const byteLen = (s: string): number => Buffer.byteLength(s, 'utf8');

export function isDNS1123Label(value: string): string[] {
  const errs: string[] = [];
  if (byteLen(value) > 63) errs.push(maxLenError(63));
  if (!DNS1123_LABEL_RE.test(value)) {
    if (DNS1123_SUBDOMAIN_RE.test(value)) errs.push('must not contain dots');
    else errs.push(regexError(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, 'my-name', '123-abc'));
  }
  return errs;
}

export function isDNS1123Subdomain(value: string): string[] {
  const errs: string[] = [];
  if (byteLen(value) > 253) errs.push(maxLenError(253));
  if (!DNS1123_SUBDOMAIN_RE.test(value)) errs.push(regexError(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, 'example.com'));
  return errs;
}

export function isDNS1035Label(value: string): string[] {
  const errs: string[] = [];
  if (byteLen(value) > 63) errs.push(maxLenError(63));
  if (!DNS1035_LABEL_RE.test(value)) errs.push(regexError(DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, 'my-name', 'abc-123'));
  return errs;
}

/** IANA_SVC_NAME (RFC 6335), lower case only: named ports and named targetPorts. */
export function isValidPortName(port: string): string[] {
  const errs: string[] = [];
  if (byteLen(port) > 15) errs.push(maxLenError(15));
  if (!/^[-a-z0-9]+$/.test(port)) errs.push('must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)');
  if (!/[a-z]/.test(port)) errs.push('must contain at least one letter (a-z)');
  if (port.includes('--')) errs.push('must not contain consecutive hyphens');
  if (port.length > 0 && (port.startsWith('-') || port.endsWith('-'))) errs.push('must not begin or end with a hyphen');
  return errs;
}

/** Label keys, annotation keys, appProtocol, loadBalancerClass: `[prefix/]name`. */
export function isQualifiedName(value: string): string[] {
  const errs: string[] = [];
  const parts = value.split('/');
  let name: string;
  if (parts.length === 1) {
    name = parts[0];
  } else if (parts.length === 2) {
    const prefix = parts[0];
    name = parts[1];
    if (prefix.length === 0) errs.push(`prefix part ${emptyError()}`);
    else for (const m of isDNS1123Subdomain(prefix)) errs.push(`prefix part ${m}`);
  } else {
    return [
      `a qualified name ${regexError(QNAME_MSG, QNAME_FMT, 'MyName', 'my.name', '123-abc')}` +
        " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
    ];
  }
  if (name.length === 0) errs.push(`name part ${emptyError()}`);
  else if (byteLen(name) > 63) errs.push(`name part ${maxLenError(63)}`);
  if (!QNAME_RE.test(name)) errs.push(`name part ${regexError(QNAME_MSG, QNAME_FMT, 'MyName', 'my.name', '123-abc')}`);
  return errs;
}

export function isValidLabelValue(value: string): string[] {
  const errs: string[] = [];
  if (byteLen(value) > 63) errs.push(maxLenError(63));
  if (!LABEL_VALUE_RE.test(value)) errs.push(regexError(LABEL_VALUE_MSG, LABEL_VALUE_FMT, 'MyValue', 'my_value', '12345'));
  return errs;
}

export function isValidPortNum(port: unknown): string[] {
  return Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65535 ? [] : [inclusiveRangeError(1, 65535)];
}

export function isEnvVarName(value: string): string[] {
  const errs: string[] = [];
  if (!ENV_VAR_RE.test(value)) errs.push(regexError(ENV_VAR_MSG, ENV_VAR_FMT, 'my.env-name', 'MY_ENV.NAME', 'MyEnvName1'));
  if (value === '.') errs.push("must not be '.'");
  else if (value === '..') errs.push("must not be '..'");
  else if (value.startsWith('..')) errs.push("must not start with '..'");
  return errs;
}

const CONFIG_KEY_FMT = '[-._a-zA-Z0-9]+';
const CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const CONFIG_KEY_RE = anchored(CONFIG_KEY_FMT);

/** ConfigMap/Secret keys (also `configMapKeyRef.key`, `secretKeyRef.key`). */
export function isConfigMapKey(value: string): string[] {
  const errs: string[] = [];
  if (byteLen(value) > 253) errs.push(maxLenError(253));
  if (!CONFIG_KEY_RE.test(value)) errs.push(regexError(CONFIG_KEY_MSG, CONFIG_KEY_FMT, 'key.name', 'KEY_NAME', 'key-name'));
  if (value === '.') errs.push("must not be '.'");
  else if (value === '..') errs.push("must not be '..'");
  else if (value.startsWith('..')) errs.push("must not start with '..'");
  return errs;
}

export function isValidPercent(value: string): string[] {
  return PERCENT_RE.test(value) ? [] : [regexError(PERCENT_MSG, PERCENT_FMT, '1%', '93%')];
}

export function isHTTPHeaderName(value: string): string[] {
  return HTTP_HEADER_RE.test(value) ? [] : [regexError(HTTP_HEADER_MSG, HTTP_HEADER_FMT, 'X-Header-Name')];
}

/**
 * A name-validation function as upstream's `ValidateNameFunc`: `prefix` is true when the value is a
 * `generateName` (a trailing '-' is then allowed).
 */
export type NameFn = (name: string, prefix: boolean) => string[];

const maskTrailingDash = (name: string): string => (name.length > 1 && name.endsWith('-') ? `${name.slice(0, -1)}a` : name);

export const nameIsDNSSubdomain: NameFn = (name, prefix) => isDNS1123Subdomain(prefix ? maskTrailingDash(name) : name);
export const nameIsDNSLabel: NameFn = (name, prefix) => isDNS1123Label(prefix ? maskTrailingDash(name) : name);
export const nameIsDNS1035Label: NameFn = (name, prefix) => isDNS1035Label(prefix ? maskTrailingDash(name) : name);

// ---------------------------------------------------------------------------------------------
// IP addresses (Go net.IP semantics: IPv4 is held as 4 bytes, IPv6 as 16; ::ffff:a.b.c.d is IPv4)

export const IP_ERROR = 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)';
export const CIDR_ERROR = 'must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)';

function parseIPv4Bytes(s: string): number[] | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^[0-9]{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

function parseIPv6Bytes(s: string): number[] | null {
  if (s.length === 0 || s.includes('%')) return null;
  let head = s;
  let tail = '';
  const dbl = s.indexOf('::');
  if (dbl >= 0) {
    if (s.indexOf('::', dbl + 1) >= 0) return null;
    head = s.slice(0, dbl);
    tail = s.slice(dbl + 2);
  }
  const groups = (part: string, allowV4: boolean): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    const fields = part.split(':');
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i];
      if (allowV4 && i === fields.length - 1 && f.includes('.')) {
        const v4 = parseIPv4Bytes(f);
        if (!v4) return null;
        out.push(v4[0], v4[1], v4[2], v4[3]);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(f)) return null;
      const n = parseInt(f, 16);
      out.push(n >> 8, n & 0xff);
    }
    return out;
  };
  if (dbl < 0) {
    const all = groups(s, true);
    return all && all.length === 16 ? all : null;
  }
  const h = groups(head, false);
  const t = groups(tail, true);
  if (!h || !t || h.length + t.length > 14) return null;
  return [...h, ...new Array<number>(16 - h.length - t.length).fill(0), ...t];
}

const V4_IN_V6_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/** Parsed address: `v4` set for IPv4 (including IPv4-mapped IPv6), `bytes` always 16 bytes. */
export interface ParsedIP {
  bytes: readonly number[];
  v4: readonly number[] | null;
}

export function parseIP(s: unknown): ParsedIP | null {
  if (typeof s !== 'string') return null;
  if (s.includes(':')) {
    const b = parseIPv6Bytes(s);
    if (!b) return null;
    const mapped = V4_IN_V6_PREFIX.every((x, i) => b[i] === x);
    return { bytes: b, v4: mapped ? b.slice(12) : null };
  }
  const v4 = parseIPv4Bytes(s);
  return v4 ? { bytes: [...V4_IN_V6_PREFIX, ...v4], v4 } : null;
}

export const isValidIP = (s: unknown): boolean => parseIP(s) !== null;
export const isIPv4 = (s: unknown): boolean => parseIP(s)?.v4 != null;
export const isIPv6 = (s: unknown): boolean => {
  const ip = parseIP(s);
  return ip !== null && ip.v4 === null;
};

export function isValidCIDR(s: unknown): boolean {
  if (typeof s !== 'string') return false;
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const addr = s.slice(0, slash);
  const bits = s.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(bits)) return false;
  const n = Number(bits);
  if (addr.includes(':')) return parseIPv6Bytes(addr) !== null && n <= 128;
  return parseIPv4Bytes(addr) !== null && n <= 32;
}

export function ipIsUnspecified(ip: ParsedIP): boolean {
  return ip.v4 ? ip.v4.every((b) => b === 0) : ip.bytes.every((b) => b === 0);
}
export function ipIsLoopback(ip: ParsedIP): boolean {
  return ip.v4 ? ip.v4[0] === 127 : ip.bytes.every((b, i) => b === (i === 15 ? 1 : 0));
}
export function ipIsLinkLocalUnicast(ip: ParsedIP): boolean {
  return ip.v4 ? ip.v4[0] === 169 && ip.v4[1] === 254 : ip.bytes[0] === 0xfe && (ip.bytes[1] & 0xc0) === 0x80;
}
export function ipIsLinkLocalMulticast(ip: ParsedIP): boolean {
  return ip.v4 ? ip.v4[0] === 224 && ip.v4[1] === 0 && ip.v4[2] === 0 : ip.bytes[0] === 0xff && (ip.bytes[1] & 0x0f) === 0x02;
}

/** True when every entry parses and the list holds at least one IPv4 and one IPv6 address (`IsDualStackIPStrings`). */
export function isDualStack(ips: readonly string[]): boolean {
  let v4 = 0;
  let v6 = 0;
  for (const s of ips) {
    const ip = parseIP(s);
    if (!ip) return false;
    if (ip.v4) v4++;
    else v6++;
  }
  return v4 > 0 && v6 > 0;
}
