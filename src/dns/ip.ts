/**
 * Address helpers for DNS: canonical forms, wire bytes, reverse (PTR) names, and the dashed
 * forms Kubernetes uses in names (`10-1-2-3`, `fd00--1`). Pure; IPv4 and IPv6.
 */

/** The IPv4 octets of a dotted quad, or undefined when it is not one. */
export function parseIPv4(s: string): number[] | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p[0] === '0')) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

/** The 16 bytes of an IPv6 address (embedded IPv4 tail allowed), or undefined. */
export function parseIPv6(s: string): number[] | undefined {
  if (!s.includes(':') || s.length > 45) return undefined;
  let tail: number[] = [];
  let str = s;
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    const v4 = parseIPv4(s.slice(lastColon + 1));
    if (!v4) return undefined;
    tail = v4;
    str = s.slice(0, lastColon + 1) + '0:0';
  }
  const halves = str.split('::');
  if (halves.length > 2) return undefined;
  const group = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = group(halves[0]);
  const rest = halves.length === 2 ? group(halves[1]) : [];
  if (!head || !rest) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return undefined;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return undefined;
  const bytes: number[] = [];
  for (const g of groups) bytes.push(g >> 8, g & 0xff);
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes;
}

/** 4 or 16 bytes, or undefined when `s` is no IP address. */
export function ipBytes(s: string): number[] | undefined {
  return parseIPv4(s) ?? parseIPv6(s);
}

/** A canonical spelling used as a map key: dotted quad, or 8 zero-padded lower-case hex groups. */
export function canonicalIP(s: string): string | undefined {
  const b = ipBytes(s);
  if (!b) return undefined;
  return bytesToKey(b);
}

function bytesToKey(b: number[]): string {
  if (b.length === 4) return b.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i] << 8) | b[i + 1]).toString(16).padStart(4, '0'));
  return groups.join(':');
}

/**
 * The address a reverse name stands for, as `canonicalIP` spells it, or undefined when the
 * name is not a complete `d.c.b.a.in-addr.arpa` / 32-nibble `ip6.arpa` name. Input is lower-case.
 */
export function ipFromReverse(name: string): string | undefined {
  if (name.endsWith('.in-addr.arpa')) {
    const parts = name.slice(0, -'.in-addr.arpa'.length).split('.');
    if (parts.length !== 4) return undefined;
    const v4 = parseIPv4(parts.reverse().join('.'));
    return v4 ? v4.join('.') : undefined;
  }
  if (name.endsWith('.ip6.arpa')) {
    const nibbles = name.slice(0, -'.ip6.arpa'.length).split('.');
    if (nibbles.length !== 32 || !nibbles.every((n) => /^[0-9a-f]$/.test(n))) return undefined;
    const hex = nibbles.reverse().join('');
    const groups: string[] = [];
    for (let i = 0; i < 32; i += 4) groups.push(hex.slice(i, i + 4));
    return groups.join(':');
  }
  return undefined;
}

/** The reverse (PTR) owner name of an address, lower-case, no trailing dot. */
export function reverseName(ip: string): string | undefined {
  const b = ipBytes(ip);
  if (!b) return undefined;
  if (b.length === 4) return `${b[3]}.${b[2]}.${b[1]}.${b[0]}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) nibbles.push((b[i] & 0xf).toString(16), (b[i] >> 4).toString(16));
  return `${nibbles.join('.')}.ip6.arpa`;
}

/**
 * The dashed form CoreDNS uses as an endpoint's hostname when it has none, and in pod names:
 * `10.1.2.3` → `10-1-2-3`, `fd00::1` → `fd00--1`, a trailing `-` gets a `0` (`fd00::` → `fd00--0`).
 */
export function dashedIP(ip: string): string {
  const s = ip.toLowerCase().replace(/[.:]/g, '-');
  return s.endsWith('-') ? `${s}0` : s;
}

/** The address a dashed label stands for (`10-1-2-3`), canonical, or undefined. */
export function ipFromDashed(label: string): string | undefined {
  const v4 = parseIPv4(label.replace(/-/g, '.'));
  if (v4) return v4.join('.');
  let s = label;
  if (s.endsWith('--0')) s = s.slice(0, -1);
  const v6 = parseIPv6(s.replace(/-/g, ':'));
  return v6 ? bytesToKey(v6) : undefined;
}

export function isIPv4(s: string): boolean {
  return parseIPv4(s) !== undefined;
}

/** Loopback: 127.0.0.0/8 or ::1. */
export function isLoopback(s: string): boolean {
  const b = ipBytes(s);
  if (!b) return false;
  if (b.length === 4) return b[0] === 127;
  return b.slice(0, 15).every((x) => x === 0) && b[15] === 1;
}
