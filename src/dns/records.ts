/**
 * The DNS vocabulary shared by lookup (pure), the wire codec and the server: record types,
 * response codes, and resource records as plain data. No I/O, no dns2.
 */

export const TYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  IXFR: 251,
  AXFR: 252,
  ANY: 255,
} as const;

export const CLASS = { IN: 1, ANY: 255 } as const;

export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  /** extended (EDNS) rcode 16: the query's EDNS version is not supported */
  BADVERS: 16,
} as const;

interface RRBase {
  /** owner name: lower-case, no trailing dot; `''` is the root */
  name: string;
  ttl: number;
}
export interface AddressRR extends RRBase {
  type: typeof TYPE.A | typeof TYPE.AAAA;
  address: string;
}
export interface NameRR extends RRBase {
  type: typeof TYPE.NS | typeof TYPE.CNAME | typeof TYPE.PTR;
  target: string;
}
export interface SrvRR extends RRBase {
  type: typeof TYPE.SRV;
  priority: number;
  weight: number;
  port: number;
  target: string;
}
export interface TxtRR extends RRBase {
  type: typeof TYPE.TXT;
  /** each string is split into ≤255-byte character-strings on the wire */
  texts: string[];
}
export interface SoaRR extends RRBase {
  type: typeof TYPE.SOA;
  mname: string;
  rname: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}
export type RR = AddressRR | NameRR | SrvRR | TxtRR | SoaRR;

/** What lookup decided; the wire layer turns it into bytes. */
export interface Answer {
  rcode: number;
  /** AA bit: set for everything inside the zones we serve */
  authoritative: boolean;
  answer: RR[];
  authority: RR[];
  additional: RR[];
  /** out of our zones and an upstream is configured: relay the query unchanged */
  forward?: boolean;
  /** an ExternalName points outside the zone and an upstream is configured: append its answer for this name */
  chase?: { name: string; type: number };
}

const TYPE_NAMES = new Map<number, string>(Object.entries(TYPE).map(([k, v]) => [v, k]));

/** `A`, `SRV`, … or `TYPE65` for types we have no name for */
export function typeName(t: number): string {
  return TYPE_NAMES.get(t) ?? `TYPE${t}`;
}

/** The numeric type for a name (`'aaaa'` → 28), or undefined. */
export function typeFromName(s: string): number | undefined {
  const v = (TYPE as Record<string, number>)[s.toUpperCase()];
  if (v !== undefined) return v;
  const m = /^TYPE(\d{1,5})$/i.exec(s);
  return m && Number(m[1]) <= 0xffff ? Number(m[1]) : undefined;
}
