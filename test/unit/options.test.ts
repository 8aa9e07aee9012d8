import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULTS, FLAGS, OptionsError, helpText, parseDuration, resolveOptions } from '../../src/cli/options.js';

t.test('defaults resolve, frozen, with absolute paths', async (t) => {
  const o = resolveOptions([], '/tmp/x');
  t.equal(o.serviceCidr, DEFAULTS.serviceCidr);
  t.equal(o.stateDir, '/tmp/x/.kubeloop');
  t.ok(Object.isFrozen(o));
  t.same(o.nodePortAddresses, ['127.0.0.1']);
});

t.test('flags override the config file, which overrides defaults', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-opts-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'k.yaml'), 'service-cidr: 127.100.0.0/16\nlog-level: debug\nudp-timeout: 2s\n');
  const o = resolveOptions(['--config', 'k.yaml', '--log-level=warn', '-f', 'a.yaml', '-f', 'b'], dir);
  t.equal(o.serviceCidr, '127.100.0.0/16', 'from file');
  t.equal(o.logLevel, 'warn', 'flag wins');
  t.equal(o.udpTimeoutMs, 2000);
  t.same(o.files, [join(dir, 'a.yaml'), join(dir, 'b')]);
});

t.test('every problem is reported at once, naming the flag', async (t) => {
  const err = t.throws(() =>
    resolveOptions(['--service-cidr', '10.0.0.0/16', '--pod-cidr', 'nope', '--log-level', 'loud', '--bogus', '--dns-addr', '1.2.3.4:53'], '/'),
  ) as OptionsError;
  t.ok(err instanceof OptionsError);
  t.match(err.problems.join('\n'), /--service-cidr 10\.0\.0\.0\/16: must be inside 127\.0\.0\.0\/8/);
  t.match(err.problems.join('\n'), /--pod-cidr: "nope" is not an IPv4 CIDR/);
  t.match(err.problems.join('\n'), /--log-level "loud": use one of/);
  t.match(err.problems.join('\n'), /unknown flag "--bogus"/);
  t.match(err.problems.join('\n'), /--dns-addr 1\.2\.3\.4:53: must be a loopback address/);
  t.equal(err.problems.length, 5);
});

t.test('--proxy-processes: a whole number from 1 to 64', async (t) => {
  t.equal(resolveOptions([], '/').proxyProcesses, 1, 'one process by default');
  t.equal(resolveOptions(['--proxy-processes', '4'], '/').proxyProcesses, 4);
  for (const bad of ['0', '65', 'two']) {
    t.throws(() => resolveOptions(['--proxy-processes', bad], '/'), { message: /--proxy-processes/ }, bad);
  }
});

t.test('overlapping ranges are refused', async (t) => {
  t.throws(() => resolveOptions(['--pod-cidr', '127.96.0.0/16'], '/'), { message: /overlap/ });
});

t.test('durations', async (t) => {
  t.equal(parseDuration('250ms'), 250);
  t.equal(parseDuration('2s'), 2000);
  t.equal(parseDuration('1.5s'), 1500);
  t.equal(parseDuration('1m'), 60000);
  t.equal(parseDuration('100'), 100);
  t.equal(parseDuration('soon'), undefined);
});

t.test('help describes every flag', async (t) => {
  const h = helpText();
  for (const f of FLAGS) t.match(h, `--${f.name}`);
});
