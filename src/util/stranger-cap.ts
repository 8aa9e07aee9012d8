/**
 * At most `limit` connections not yet proven to be a trusted peer's (no client certificate, an
 * unfinished TLS handshake, another certificate): one more closes the oldest of them, so
 * strangers cannot take a server's descriptors whatever they open. A connection that proves
 * itself is `trust`ed and stops counting. Shared by the node agent endpoint and the tunnel.
 */
import type { Socket } from 'node:net';

export class StrangerCap {
  readonly #limit: number;
  readonly #strangers = new Set<Socket>();
  readonly #onClosed: () => void;

  /** `onClosed`: a stranger was closed to make room (for the server's stats) */
  constructor(limit: number, onClosed: () => void = () => undefined) {
    this.#limit = limit;
    this.#onClosed = onClosed;
  }

  /** a new connection: a stranger's until trusted; over the cap, the oldest stranger is closed */
  add(sock: Socket): void {
    this.#strangers.add(sock);
    sock.once('close', () => this.#strangers.delete(sock));
    if (this.#strangers.size <= this.#limit) return;
    const oldest = this.#strangers.values().next().value;
    if (oldest) {
      this.#strangers.delete(oldest);
      oldest.destroy();
      this.#onClosed();
    }
  }

  /** the TLS socket proved to be a trusted peer's: it and the TCP socket under it stop counting */
  trust(tls: Socket): void {
    const raw = (tls as unknown as { _parent?: Socket })._parent;
    if (raw) this.#strangers.delete(raw);
    this.#strangers.delete(tls);
  }
}
