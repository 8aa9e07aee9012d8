/** IPv4 CIDR arithmetic on 32-bit unsigned numbers. */

export interface Cidr {
  /** network address as an unsigned 32-bit number */
  base: number;
  bits: number;
  /** number of addresses in the block */
  size: number;
  text: string;
}

export function ipToNumber(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const o = Number(m[i]);
    if (o > 255 || (m[i].length > 1 && m[i][0] === '0')) return undefined;
    n = n * 256 + o;
  }
  return n;
}

export function numberToIp(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Parses `a.b.c.d/n`; throws an Error whose message says what a valid value looks like. */
export function parseCidr(text: string): Cidr {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text.trim());
  const ip = m ? ipToNumber(m[1]) : undefined;
  const bits = m ? Number(m[2]) : NaN;
  if (!m || ip === undefined || bits > 32) {
    throw new Error(`"${text}" is not an IPv4 CIDR (expected e.g. 127.96.0.0/12)`);
  }
  const size = 2 ** (32 - bits);
  const base = bits === 0 ? 0 : (ip & (~0 << (32 - bits))) >>> 0;
  return { base, bits, size, text: `${numberToIp(base)}/${bits}` };
}

export function cidrContains(c: Cidr, ip: string): boolean {
  const n = ipToNumber(ip);
  return n !== undefined && n >= c.base && n < c.base + c.size;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.base < b.base + b.size && b.base < a.base + a.size;
}

/** The i-th address of the block (0 = network address). */
export function nthAddress(c: Cidr, i: number): string {
  return numberToIp((c.base + i) >>> 0);
}

export const LOOPBACK = parseCidr('127.0.0.0/8');

export function isLoopback(ip: string): boolean {
  return ip === '::1' || cidrContains(LOOPBACK, ip);
}
