import os from 'node:os';
import { isIP } from 'node:net';

/**
 * Which addresses this machine can listen on: those of its interfaces, and on Linux all of
 * 127.0.0.0/8 (the whole block is routed to `lo` and bindable without configuration).
 * Read once per sync, so interfaces added later are picked up.
 */
export class LocalAddresses {
  readonly #set: Set<string>;
  readonly #allLoopback: boolean;

  constructor(o: { platform?: NodeJS.Platform; interfaces?: ReturnType<typeof os.networkInterfaces> } = {}) {
    this.#allLoopback = (o.platform ?? process.platform) === 'linux';
    this.#set = new Set<string>();
    for (const list of Object.values(o.interfaces ?? os.networkInterfaces())) {
      for (const a of list ?? []) this.#set.add(a.address.toLowerCase());
    }
  }

  has(ip: string): boolean {
    const v = isIP(ip);
    if (v === 0) return false;
    if (this.#allLoopback && v === 4 && ip.startsWith('127.')) return true;
    return this.#set.has(ip.toLowerCase());
  }
}
