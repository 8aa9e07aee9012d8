import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { Endpoints, Service, Stored } from '../api/types.js';
import type { Options } from './options.js';
import { renderTable, serviceRows } from './table.js';

/** What `kubeloop status` needs of a kubeconfig `up` wrote: the server and the inline credential. */
interface Access {
  server: string;
  ca?: string;
  cert?: string;
  key?: string;
  token?: string;
}

const unb64 = (s: unknown): string | undefined => (typeof s === 'string' ? Buffer.from(s, 'base64').toString('utf8') : undefined);

/** Reads `<stateDir>/kubeconfig`; throws a one-line message naming the file and the fix. */
export async function readAccess(stateDir: string): Promise<Access> {
  const file = join(stateDir, 'kubeconfig');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new Error(`no kubeconfig at ${file}: start the daemon with kubeloop up (same --state-dir) first`);
  }
  const doc = parseYaml(text) as {
    clusters?: Array<{ cluster?: Record<string, unknown> }>;
    users?: Array<{ user?: Record<string, unknown> }>;
  } | null;
  const cluster = doc?.clusters?.[0]?.cluster;
  const user = doc?.users?.[0]?.user ?? {};
  if (typeof cluster?.server !== 'string') throw new Error(`${file} names no cluster server: restart kubeloop up to rewrite it`);
  return {
    server: cluster.server,
    ca: unb64(cluster['certificate-authority-data']),
    cert: unb64(user['client-certificate-data']),
    key: unb64(user['client-key-data']),
    token: typeof user.token === 'string' ? user.token : undefined,
  };
}

/** GET `path` from the API as JSON (5 s timeout); throws a one-line message. */
export function getJson<T>(a: Access, path: string): Promise<T> {
  const url = new URL(path, a.server);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (a.token) headers.authorization = `Bearer ${a.token}`;
  return new Promise<T>((resolve, reject) => {
    const opts = { headers, timeout: 5000, ca: a.ca, cert: a.cert, key: a.key, agent: false as const };
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, opts, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`${url.href} answered ${res.statusCode}: ${body.slice(0, 200).replace(/\s+/g, ' ')}`));
        try {
          resolve(JSON.parse(body) as T);
        } catch {
          reject(new Error(`${url.href} answered something that is not JSON`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', (err) => reject(new Error(`no kubeloop answers at ${a.server} (${err.message}): is kubeloop up running with this --state-dir?`)));
    req.end();
  });
}

/**
 * `kubeloop status`: the table `up` printed, read again from the running daemon over its API
 * (the kubeconfig in the state dir), with the same flags `up` was given for the state dir,
 * cluster domain and NodePort addresses. Resolves to the text to print.
 */
export async function statusText(o: Pick<Options, 'stateDir' | 'nodePortAddresses' | 'clusterDomain'>): Promise<string> {
  const access = await readAccess(o.stateDir);
  const [services, endpoints] = await Promise.all([
    getJson<{ items: Stored<Service>[] }>(access, '/api/v1/services'),
    getJson<{ items: Stored<Endpoints>[] }>(access, '/api/v1/endpoints'),
  ]);
  const eps = new Map(endpoints.items.map((e) => [`${e.metadata.namespace}/${e.metadata.name}`, e]));
  const rows = serviceRows(
    services.items,
    (ns, name) => eps.get(`${ns}/${name}`),
    o.nodePortAddresses,
    (s) => `${s.metadata.name}.${s.metadata.namespace}.svc.${o.clusterDomain}`,
    new Set(),
    access.ca ? join(o.stateDir, 'pki', 'ca.crt') : undefined,
  );
  return `${renderTable(rows)}\n\nAPI:   ${access.server}    export KUBECONFIG=${join(o.stateDir, 'kubeconfig')}`;
}
