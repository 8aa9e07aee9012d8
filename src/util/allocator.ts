import { type Cidr, ipToNumber, nthAddress } from './cidr.js';

/**
 * Allocates integers in [first, last] at random with a linear probe, as upstream's
 * bitmap allocators do (random start spreads new objects; explicit requests are honoured).
 */
export class RangeAllocator {
  readonly first: number;
  readonly last: number;
  readonly #used = new Set<number>();

  constructor(first: number, last: number) {
    if (last < first) throw new Error(`empty range ${first}-${last}`);
    this.first = first;
    this.last = last;
  }

  get free(): number {
    return this.last - this.first + 1 - this.#used.size;
  }

  has(n: number): boolean {
    return this.#used.has(n);
  }

  inRange(n: number): boolean {
    return Number.isInteger(n) && n >= this.first && n <= this.last;
  }

  /** Marks `n` used; 'range' when outside, 'taken' when already used. */
  allocate(n: number): 'ok' | 'range' | 'taken' {
    if (!this.inRange(n)) return 'range';
    if (this.#used.has(n)) return 'taken';
    this.#used.add(n);
    return 'ok';
  }

  /** Any free number, or undefined when full. */
  allocateNext(): number | undefined {
    const span = this.last - this.first + 1;
    if (this.#used.size >= span) return undefined;
    const start = Math.floor(Math.random() * span);
    for (let i = 0; i < span; i++) {
      const n = this.first + ((start + i) % span);
      if (!this.#used.has(n)) {
        this.#used.add(n);
        return n;
      }
    }
    return undefined;
  }

  release(n: number): void {
    this.#used.delete(n);
  }
}

/** IPv4 addresses of a CIDR, without the network and broadcast addresses. */
export class IpAllocator {
  readonly cidr: Cidr;
  readonly #range: RangeAllocator;

  constructor(cidr: Cidr) {
    if (cidr.size < 4) throw new Error(`${cidr.text} is too small to allocate addresses from (use a /30 or larger)`);
    this.cidr = cidr;
    this.#range = new RangeAllocator(1, cidr.size - 2);
  }

  #offset(ip: string): number | undefined {
    const n = ipToNumber(ip);
    return n === undefined ? undefined : n - this.cidr.base;
  }

  contains(ip: string): boolean {
    const o = this.#offset(ip);
    return o !== undefined && this.#range.inRange(o);
  }

  allocate(ip: string): 'ok' | 'range' | 'taken' {
    const o = this.#offset(ip);
    return o === undefined ? 'range' : this.#range.allocate(o);
  }

  allocateNext(): string | undefined {
    const o = this.#range.allocateNext();
    return o === undefined ? undefined : nthAddress(this.cidr, o);
  }

  release(ip: string): void {
    const o = this.#offset(ip);
    if (o !== undefined) this.#range.release(o);
  }

  get free(): number {
    return this.#range.free;
  }
}

/** Parses `30000-32767`. */
export function parsePortRange(text: string): { first: number; last: number } {
  const m = /^(\d+)-(\d+)$/.exec(text.trim());
  const first = m ? Number(m[1]) : NaN;
  const last = m ? Number(m[2]) : NaN;
  if (!m || first < 1 || last > 65535 || last < first) {
    throw new Error(`"${text}" is not a port range (expected e.g. 30000-32767)`);
  }
  return { first, last };
}
