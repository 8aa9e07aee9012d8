/**
 * The demo manifests as `npm start` loads them (`kubeloop up -f config/`, default flags apart
 * from this file's private addresses): they apply with zero problems and every Service in the
 * printed table answers on every address it lists, or resolves in DNS.
 */
import https from 'node:https';
import t from 'tap';
import { ask } from './dns-helpers.js';
import { tableAddresses } from './helpers/daemon.js';
import { get } from './helpers/http.js';
import { waitFor } from './helpers/wait.js';
import { startCluster } from './services-helpers.js';

/** One HTTPS GET trusting only `ca`. */
function getTls(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, agent: false, timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

t.test('kubeloop up -f config/: every Service answers or resolves', async (t) => {
  const c = await startCluster(t, [
    '-f', 'config/',
    '--service-cidr', '127.165.0.0/16',
    '--pod-cidr', '127.175.0.0/16',
    '--node-ip', '127.0.65.1',
    '--nodeport-addresses', '127.0.65.1',
    // the default pool is 127.240.0.0/16; a private one keeps parallel test files apart
    '--lb-pool', '127.185.0.0/24',
  ]);
  const out = c.daemon.stdout();
  t.same(c.daemon.stderr().split('\n').filter((l) => l.startsWith('kubeloop:')), [], 'no problem applying config/');

  const header = out.split('\n').findIndex((l) => l.startsWith('SERVICE '));
  const rows = out
    .split('\n')
    .slice(header + 1)
    .filter((l) => /^\S+\/\S+\s/.test(l))
    .map((l) => {
      const [name, type] = l.split(/\s+/);
      return { name: name!, type: type!, addresses: tableAddresses(out, name!) };
    });
  const names = rows.map((r) => r.name);
  for (const want of [
    'default/myapp-service',
    'default/myapp-service-multiport',
    'default/myapp-service-nodeport',
    'default/myapp-service-loadbalancer',
    'prod/my-service',
  ]) {
    t.ok(names.includes(want), `${want} is in the table`);
  }

  for (const r of rows) {
    const [ns, name] = r.name.split('/');
    const fqdn = `${name}.${ns}.svc.cluster.local`;
    if (r.type === 'ExternalName') {
      const a = await ask(c.dnsPort, fqdn, 'CNAME');
      t.match(a.answer[0], /CNAME \S+/, `${r.name}: dig ${fqdn} → ${a.answer[0]}`);
      continue;
    }
    // kube-dns speaks DNS on its ClusterIP:53 (test/dns-port53 digs it), not HTTP
    if (r.addresses[0]?.startsWith('headless:') || r.name === 'kube-system/kube-dns') {
      const a = await ask(c.dnsPort, fqdn, 'A');
      t.ok(a.answer.length > 0, `${r.name}: dig ${fqdn} → ${a.answer.join('; ')}`);
      continue;
    }
    const tcp = r.addresses.filter((a) => /^[\d.]+:\d+$/.test(a));
    t.ok(tcp.length > 0, `${r.name} lists TCP addresses`);
    for (const a of tcp) {
      // the API behind default/kubernetes speaks HTTPS; its certificate names the ClusterIP
      const scheme = r.name === 'default/kubernetes' ? 'https' : 'http';
      const res = await waitFor(() => (scheme === 'https' ? getTls(`https://${a}/version`, c.api.client.tls.ca!) : get(`http://${a}/`, { timeoutMs: 3000 })), { what: `${scheme}://${a}/` });
      t.ok(res.status > 0, `${r.name}: curl ${scheme}://${a}/ → ${res.status} ${res.body.split('\n')[0]!.slice(0, 60)}`);
    }
  }
  const lb = rows.find((r) => r.name === 'default/myapp-service-loadbalancer')!;
  t.ok(lb.addresses.some((a) => a.startsWith('127.185.0.')), `the LoadBalancer lists its ingress IP: ${lb.addresses.join(' ')}`);
});
