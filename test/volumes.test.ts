import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { startDaemon } from './helpers/daemon.js';
import { daemonApi } from './helpers/api.js';
import { get } from './helpers/http.js';
import { waitFor } from './helpers/wait.js';

// Volumes at their mountPath in the pod's own mount namespace (issue 16): one daemon, two pods.
// The shell pod prints what it sees in a loop; the test polls its log.

const MANIFEST = `
apiVersion: v1
kind: ConfigMap
metadata: {name: web}
data: {index.html: "hello v1\\n", other.txt: "other v1\\n"}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {token: s3cret, unused: x}
---
apiVersion: v1
kind: Pod
metadata: {name: vol, labels: {app: vol}}
spec:
  containers:
  - name: c1
    image: busybox
    command: [sh, -c]
    args:
    - |
      echo from-c1 > /var/kl-shared/note
      echo mem-c1 > /kl-mem/m
      if echo x > /var/kl-ro/x 2>/dev/null; then echo RO=writable; else echo RO=refused; fi
      while true; do
        echo "INDEX=$(cat /usr/share/nginx/html/index.html)"
        echo "SECRET=$(cat /etc/kl-secret/tok) MODE=$(stat -L -c %a /etc/kl-secret/tok) UNUSED=$(ls /etc/kl-secret/unused 2>&1 | grep -c 'No such')"
        echo "ITEMMODE=$(stat -L -c %a /usr/share/nginx/html/index.html)"
        echo "SUB=$(cat /srv/kl-sub/other.txt) OPT=$(ls /opt/kl-opt | wc -l)"
        echo "LABELS=$(cat /etc/kl-info/labels | tr '\\n' ' ')"
        echo "RESOLV=$(tr '\\n' ' ' < /etc/resolv.conf)"
        echo "HOSTS=$(grep -c "vol$" /etc/hosts)"
        echo "TOP=$(cat /kl-top/note) FILE=$(cat /kl-file.txt) DEEP=$(stat -c %F /kl-deep/a/b 2>&1) CWD=$(pwd)"
        echo "MEM=$(stat -f -c %T /kl-mem) MEMBYTES=$(( $(stat -f -c '%b * %S' /kl-mem) ))"
        echo "ENVVOL=$KUBELOOP_VOLUME_HTML EXPANDED=$ROOT"
        sleep 0.2
      done
    env:
    - {name: ROOT, value: "$(KUBELOOP_VOLUME_HTML)/x $$(KEPT)"}
    volumeMounts:
    - {name: html, mountPath: /usr/share/nginx/html}
    - {name: sec, mountPath: /etc/kl-secret}
    - {name: html, mountPath: /srv/kl-sub/other.txt, subPath: other.txt}
    - {name: opt, mountPath: /opt/kl-opt}
    - {name: info, mountPath: /etc/kl-info}
    - {name: shared, mountPath: /var/kl-shared}
    - {name: shared, mountPath: /var/kl-ro, readOnly: true}
    - {name: shared, mountPath: /kl-top}
    - {name: html, mountPath: /kl-file.txt, subPath: other.txt}
    - {name: opt, mountPath: /kl-deep/a/b}
    - {name: mem, mountPath: /kl-mem}
  - name: c2
    image: busybox
    command: [sh, -c, 'while true; do echo "C2=$(cat /var/kl-shared/note 2>&1) C2MEM=$(cat /kl-mem/m 2>&1)"; sleep 0.2; done']
    volumeMounts:
    - {name: shared, mountPath: /var/kl-shared}
    - {name: mem, mountPath: /kl-mem}
  volumes:
  - {name: html, configMap: {name: web, items: [{key: index.html, path: index.html, mode: 0640}, {key: other.txt, path: other.txt}]}}
  - {name: sec, secret: {secretName: creds, items: [{key: token, path: tok}]}}
  - {name: opt, configMap: {name: absent, optional: true}}
  - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}
  - {name: shared, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 8Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web-nginx}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: dnsprobe}
spec:
  containers:
  - name: c
    image: busybox
    env: [{name: NODE, value: NODE_BINARY}]
    command: [sh, -c]
    args:
    - |
      until getent hosts web >/dev/null; do sleep 0.2; done
      echo "SHORT=$(getent hosts web | awk '{print $1}')"
      echo "NSQ=$(getent hosts web.default | awk '{print $1}')"
      echo "SELF=$(getent hosts dnsprobe | awk '{print $1}')"
      "$NODE" -e "require('dns').lookup('web', (e, a) => console.log('NODE=' + (e ? e.code : a)))"
      echo DONE
      exec sleep 3600
    volumeMounts: [{name: mem, mountPath: /kl-mem}]
  volumes: [{name: mem, emptyDir: {medium: Memory}}]
---
apiVersion: v1
kind: Pod
metadata: {name: nginx, labels: {app: web-nginx}}
spec:
  containers:
  - name: nginx
    image: nginx
    ports: [{containerPort: 8080}]
    volumeMounts: [{name: html, mountPath: /usr/share/nginx/html}]
  volumes: [{name: html, configMap: {name: web}}]
`;

t.test('volumes at their mountPath', async (t) => {
  const d = await startDaemon(['--pod-cidr', '127.236.0.0/16', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0']);
  t.teardown(() => d.stop());
  const api = await daemonApi(d);
  const file = `${d.stateDir}/manifest.yaml`;
  await writeFile(file, MANIFEST.replace('NODE_BINARY', JSON.stringify(process.execPath)));
  const r = await api.kubectl('apply', '-f', file);
  t.equal(r.code, 0, r.stderr);
  // the log says what pods get (once the first pod made the runtime look), and warns of
  // nothing it has: a mount namespace and a root of its own used to come with "pods get no
  // mount namespace (undefined)"
  await waitFor(() => /each container runs in its own mount namespace/.test(d.stderr()), { what: 'the mount namespace log line' });
  t.notMatch(d.stderr(), /pods get no (mount namespace|root of their own)/, 'the start-up log warns of nothing pods have');
  const logs = async (c: string) => (await api.kubectl('logs', 'vol', '-c', c)).stdout;
  const last = (text: string, key: string) => text.split('\n').filter((l) => l.startsWith(`${key}=`)).at(-1) ?? '';
  const out = await waitFor(async () => {
    const l = await logs('c1');
    return l.includes('ENVVOL=') ? l : undefined;
  }, { timeoutMs: 20_000, what: 'c1 prints' });

  t.equal(last(out, 'INDEX'), 'INDEX=hello v1', 'a configMap key at its mountPath');
  t.equal(last(out, 'ITEMMODE'), 'ITEMMODE=640', 'items[].mode');
  t.equal(last(out, 'SECRET'), 'SECRET=s3cret MODE=600 UNUSED=1', 'a secret file is 0600; items leave the other keys out');
  t.equal(last(out, 'SUB'), 'SUB=other v1 OPT=0', 'subPath of a file; an optional missing configMap is an empty volume');
  t.equal(last(out, 'LABELS'), 'LABELS=app="vol"', 'downwardAPI labels');
  t.match(last(out, 'RESOLV'), /^RESOLV=nameserver 127\.\d+\.\d+\.\d+ (nameserver \S+ ){0,2}search default\.svc\.cluster\.local svc\.cluster\.local cluster\.local options ndots:5 $/, "the pod's resolv.conf: the cluster DNS first");
  const hostServers = readFileSync('/etc/resolv.conf', 'utf8').split('\n').map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1]).filter((n): n is string => !!n).slice(0, 2);
  t.match(last(out, 'RESOLV'), new RegExp(`^RESOLV=nameserver \\S+ ${hostServers.map((n) => `nameserver ${n.replace(/\./g, '\\.')} `).join('')}search`), "then this machine's resolvers, for names outside the cluster");
  t.equal(last(out, 'HOSTS'), 'HOSTS=1', "the pod's hosts file names it");
  t.equal(last(out, 'ENVVOL'), 'ENVVOL=/usr/share/nginx/html EXPANDED=/usr/share/nginx/html/x $(KEPT)', '$(VAR) of a volume variable; $$ escapes');
  t.match(out, /RO=refused/, 'a readOnly mount refuses writes');
  t.notOk(existsSync('/usr/share/nginx/html/index.html') && !existsSync('/usr/share/nginx'), 'nothing made on the host');
  t.notOk(existsSync('/srv/kl-sub') || existsSync('/opt/kl-opt') || existsSync('/var/kl-shared'), 'mount points stay inside the pod');

  const c2 = await waitFor(async () => last(await logs('c2'), 'C2') === 'C2=from-c1 C2MEM=mem-c1', { timeoutMs: 10_000, what: 'c2 reads what c1 wrote' });
  t.ok(c2, 'an emptyDir (and one of medium Memory) is shared between the containers of a pod');

  // mount points whose nearest existing parent is / (a root of the pod's own)
  t.equal(last(out, 'TOP'), 'TOP=from-c1 FILE=other v1 DEAP=directory CWD=/usr/share/nginx/html'.replace('DEAP', 'DEEP'), '/kl-top, a subPath file /kl-file.txt and /kl-deep/a/b are at their paths; the cwd is kept');
  t.notOk(existsSync('/kl-top') || existsSync('/kl-file.txt') || existsSync('/kl-deep'), 'and nothing is made in the host\'s /');
  const ex = await api.kubectl('exec', 'vol', '-c', 'c1', '--', 'sh', '-c', 'cat /kl-top/note; pwd; stat -f -c %T /kl-mem; cat /kl-mem/m');
  t.equal(ex.stdout, 'from-c1\n/usr/share/nginx/html\ntmpfs\nmem-c1\n', 'exec (nsenter) sees the same root, cwd and tmpfs');
  // emptyDir medium Memory: a tmpfs of sizeLimit, mounted under the pod dir on the host side
  t.equal(last(out, 'MEM'), `MEM=tmpfs MEMBYTES=${8 * 1024 * 1024}`, 'a medium: Memory emptyDir is a tmpfs of its sizeLimit');
  const podMounts = (pod: string) => readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l.split(' ')[1]?.startsWith(`${d.stateDir}/pods/default_${pod}_`));
  const stateMounts = () => podMounts('vol');
  t.match(stateMounts(), [/^kubeloop-emptydir \S+\/_volumes\/mem tmpfs /], "one tmpfs in the pod's dir on the host while the pod runs");

  const p = await api.kubectl('patch', 'configmap', 'web', '--type=merge', '-p', '{"data":{"index.html":"hello v2\\n","other.txt":"other v2\\n"}}');
  t.equal(p.code, 0, p.stderr);
  await waitFor(async () => last(await logs('c1'), 'INDEX') === 'INDEX=hello v2', { timeoutMs: 10_000, what: 'the patched ConfigMap in the file' });
  t.pass('a patched ConfigMap reaches the mounted file');
  const after = await logs('c1');
  t.equal(last(after, 'SUB'), 'SUB=other v1 OPT=0', 'a subPath mount keeps its content (as upstream)');

  // the built-in nginx serves the volume mounted at its web root
  const ip = await waitFor(async () => (await api.kubectl('get', 'pod', 'nginx', '-o', 'jsonpath={.status.podIP}')).stdout.trim(), { timeoutMs: 10_000 });
  const page = await waitFor(async () => {
    const g = await get(`http://${ip}:8080/index.html`).catch(() => undefined);
    return g?.status === 200 && g.body;
  }, { timeoutMs: 10_000, what: 'nginx serves index.html' });
  t.equal(page, 'hello v2\n', 'nginx serves the configMap at /usr/share/nginx/html');

  const desc = await api.kubectl('describe', 'pod', 'vol');
  t.match(desc.stdout, /\/usr\/share\/nginx\/html from html \(r[ow]\)/, 'describe shows the mount');
  t.match(desc.stdout, /kubeloop\.dev\/VolumeMountsAtPaths\s+True/, 'and that it is at its path');

  // a command: pod resolves a Service with the system resolver (glibc getent, Node's dns.lookup)
  const clusterIP = (await api.kubectl('get', 'svc', 'web', '-o', 'jsonpath={.spec.clusterIP}')).stdout.trim();
  const dns = await waitFor(async () => {
    const l = (await api.kubectl('logs', 'dnsprobe')).stdout;
    return l.includes('DONE') ? l : undefined;
  }, { timeoutMs: 15_000, what: 'dnsprobe resolves web' });
  const dnsIP = (await api.kubectl('get', 'pod', 'dnsprobe', '-o', 'jsonpath={.status.podIP}')).stdout.trim();
  t.match(clusterIP, /^127\./, 'the Service has a ClusterIP');
  t.equal(last(dns, 'SHORT'), `SHORT=${clusterIP}`, 'getent hosts web: the short name through the search list');
  t.equal(last(dns, 'NSQ'), `NSQ=${clusterIP}`, 'getent hosts web.default');
  t.equal(last(dns, 'NODE'), `NODE=${clusterIP}`, "Node's dns.lookup('web')");
  t.equal(last(dns, 'SELF'), `SELF=${dnsIP}`, "the pod's own name from its /etc/hosts");

  // deleting the pod unmounts its memory volume on the host
  const del = await api.kubectl('delete', 'pod', 'vol', '--grace-period=1');
  t.equal(del.code, 0, del.stderr);
  await waitFor(() => stateMounts().length === 0, { timeoutMs: 10_000, what: 'the tmpfs is unmounted' });
  t.same(stateMounts(), [], 'nothing stays mounted under the state dir');
  t.equal(podMounts('dnsprobe').length, 1, "dnsprobe's memory volume is still mounted on the host");
  // a graceful stop unmounts what pods still run with (the helper then removes the state dir)
  const dir = d.stateDir;
  await d.stop();
  t.notOk(readFileSync('/proc/self/mounts', 'utf8').includes(dir), 'nothing is mounted under the state dir after kubeloop stops');
});
