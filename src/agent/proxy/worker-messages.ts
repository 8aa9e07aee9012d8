/** The IPC messages between the proxy (workers.ts) and its data-plane worker processes (worker.ts). */
import type { ListenerCounters, PortalSpec } from './portal.js';
import type { Endpoint } from './round-robin.js';

/** proxy → worker */
export type ToWorker =
  /** sent with the listening socket: accept from it too, balancing over `endpoints` */
  | { t: 'listen'; spec: PortalSpec; endpoints: Endpoint[]; ranges?: readonly string[] }
  /** the endpoint set of a service port changed */
  | { t: 'endpoints'; servicePort: string; endpoints: Endpoint[] }
  /** the load-balancer source ranges of a portal changed (undefined: anyone) */
  | { t: 'ranges'; id: string; ranges?: readonly string[] }
  /** stop accepting on the portal (its connections drain) and close the socket; answered by `ack` */
  | { t: 'close'; id: string; seq: number }
  /** end every connection, close every socket, answer `ack`, exit */
  | { t: 'stop'; seq: number };

/** totals of one portal in one worker; bytes include the connections still open */
export interface WorkerListenerStats {
  id: string;
  active: number;
  counters: ListenerCounters;
}

/** totals of one endpoint of one service port in one worker */
export interface WorkerEndpointStats {
  servicePort: string;
  id: string;
  connections: number;
  failed: number;
  bytesIn: number;
  bytesOut: number;
}

/** worker → proxy */
export type FromWorker =
  | { t: 'ready' }
  /** `final`: for a `close`, the portal's totals at that moment (the proxy keeps them) */
  | { t: 'ack'; seq: number; final?: WorkerListenerStats }
  /** every portal it accepts on and every endpoint it balances over; sent when they changed */
  | { t: 'stats'; listeners: WorkerListenerStats[]; endpoints: WorkerEndpointStats[] }
  /** one pino JSON line, logged again by the proxy's logger */
  | { t: 'log'; line: string };
