import os from 'node:os';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { Endpoints, Service } from '../api/types.js';
import { keyOf } from '../api/types.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { EventRecorder } from '../store/events.js';
import { type ReconcileContext, Runner } from './runner.js';

export interface ServiceWarningsOptions {
  informers: InformerFactory;
  log: Logger;
  events: EventRecorder;
  /** which addresses are this machine's; default: 127.0.0.0/8 and ::1 on Linux, plus the interfaces' */
  isLocal?: (ip: string) => boolean;
}

interface Warning {
  reason: string;
  message: string;
}

/**
 * Tells users, as Warning events on the Service (`kubectl describe service`), what of a valid
 * Service the proxy will not serve on this machine:
 * - `UnsupportedProtocol`: SCTP ports (the API accepts them; the proxy serves TCP and UDP);
 * - `ExternalIPNotLocal`: `externalIPs` that are not addresses of this machine (stored, never
 *   listened on);
 * - `EndpointsNotLocal`: ready endpoint addresses off this machine's loopback, which the proxy
 *   never dials (kubeloop sends nothing off the machine).
 * An event is written when a Service's set of warnings changes, not on every update.
 */
export class ServiceWarnings {
  readonly runner: Runner;
  readonly #events: EventRecorder;
  readonly #services: Informer<Service>;
  readonly #endpoints: Informer<Endpoints>;
  readonly #isLocal: (ip: string) => boolean;
  /** per Service: the warnings last reported */
  readonly #reported = new Map<string, string>();

  constructor(o: ServiceWarningsOptions) {
    this.#events = o.events;
    this.#isLocal = o.isLocal ?? isLocalAddress;
    this.#services = o.informers.for<Service>('Service');
    this.#endpoints = o.informers.for<Endpoints>('Endpoints');
    this.runner = new Runner({ name: 'service-warnings', reconciler: this, log: o.log, informers: [this.#services, this.#endpoints], workers: 1 });
    this.#services.addHandler({
      onAdd: (s) => this.runner.enqueue(keyOf(s)),
      onUpdate: (_o, s) => this.runner.enqueue(keyOf(s)),
      onDelete: (s) => this.#reported.delete(keyOf(s)),
    });
    this.#endpoints.addHandler({
      onAdd: (e) => this.runner.enqueue(keyOf(e)),
      onUpdate: (_o, e) => this.runner.enqueue(keyOf(e)),
    });
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  async reconcile(key: string, { log }: ReconcileContext): Promise<void> {
    const svc = this.#services.getByKey(key);
    if (!svc) {
      this.#reported.delete(key);
      return;
    }
    const warnings = this.#warnings(svc, this.#endpoints.getByKey(key));
    const sig = JSON.stringify(warnings);
    if (this.#reported.get(key) === sig) return;
    this.#reported.set(key, sig);
    for (const w of warnings) {
      log.warn({ reason: w.reason }, w.message);
      this.#events.event(svc, 'Warning', w.reason, w.message);
    }
  }

  #warnings(svc: Service, ep: Endpoints | undefined): Warning[] {
    const spec = svc.spec ?? {};
    if (spec.type === 'ExternalName' || !spec.clusterIP || spec.clusterIP === 'None') return [];
    const out: Warning[] = [];
    const sctp = (spec.ports ?? []).filter((p) => p.protocol === 'SCTP').map((p) => `${p.name || p.port}/SCTP`);
    if (sctp.length) {
      out.push({
        reason: 'UnsupportedProtocol',
        message:
          `port ${sctp.join(', ')} is not proxied: kubeloop's service proxy serves TCP and UDP only ` +
          '(the Service, its Endpoints and DNS records are kept; clients of the SCTP port cannot connect)',
      });
    }
    const far = (spec.externalIPs ?? []).filter((ip) => !this.#isLocal(ip));
    if (far.length) {
      out.push({
        reason: 'ExternalIPNotLocal',
        message:
          `externalIPs ${far.join(', ')} are not addresses of this machine: stored, but nothing listens on them ` +
          '(use a loopback address such as 127.0.0.50 with the daemon flag --allow-loopback-endpoints to get a listener)',
      });
    }
    const off = new Set<string>();
    for (const ss of ep?.subsets ?? []) for (const a of ss.addresses ?? []) if (a.ip && !isLoopback(a.ip)) off.add(a.ip);
    if (off.size) {
      out.push({
        reason: 'EndpointsNotLocal',
        message:
          `endpoint addresses ${[...off].sort().join(', ')} are not on this machine: kubeloop's proxy never sends traffic ` +
          'off the machine, so they get no connections (point the Endpoints at a process on this machine: a pod IP or a ' +
          "node address such as 127.0.0.1 works as is, other 127.0.0.0/8 addresses need the daemon flag --allow-loopback-endpoints)",
      });
    }
    return out;
  }
}

function isLoopback(ip: string): boolean {
  return ip === '::1' || (isIP(ip) === 4 && ip.startsWith('127.'));
}

/** On Linux all of 127.0.0.0/8 is bindable; elsewhere only configured addresses. */
function isLocalAddress(ip: string): boolean {
  const v = isIP(ip);
  if (v === 0) return false;
  if (v === 4 && ip.startsWith('127.') && process.platform === 'linux') return true;
  const want = ip.toLowerCase();
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.address.toLowerCase() === want) return true;
  }
  return false;
}
