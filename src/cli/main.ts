import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Daemon } from './daemon.js';
import type { Options } from './options.js';
import { type SignalState, stopSignal, watchParent } from './signals.js';
import { startupBegins, startupOver } from '../util/after-startup.js';

// Modules load when a command needs them: `version` and `help` import nothing heavy, `status`
// no daemon, and `up` starts loading the daemon's modules while it reads its options.

const USAGE = `Usage: kubeloop <command> [flags]

Commands:
  up          start the daemon (see kubeloop up --help)
  status      print the table up printed, read from the running daemon (same --state-dir)
  kubeconfig  print the kubeconfig of the daemon using --state-dir (--path: only its path)
  version     print the version
  help        this text

Kubernetes Services, DNS and workloads on loopback: pods are processes, Services are real listeners.`;

function version(): string {
  // ../../package.json from src/cli/ and from dist/cli/ alike
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Options from argv, or undefined after printing every problem (one line each). */
async function options(argv: readonly string[]): Promise<Readonly<Options> | undefined> {
  const { OptionsError, resolveOptions } = await import('./options.js');
  try {
    return resolveOptions(argv, process.cwd(), process.env);
  } catch (e) {
    if (e instanceof OptionsError) {
      for (const p of e.problems) console.error(`kubeloop: ${p}`);
      return undefined;
    }
    throw e;
  }
}

/** The CLI: the only reader of argv and the environment. Resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case 'help':
    case '-h':
    case '--help':
      console.log(USAGE);
      return 0;
    case 'version':
    case '--version':
      console.log(`kubeloop ${version()}`);
      return 0;
    case 'kubeconfig':
      return kubeconfig(rest);
    case 'status':
      return status(rest);
    case 'up':
      if (rest.includes('-h') || rest.includes('--help')) {
        console.log((await import('./options.js')).helpText());
        return 0;
      }
      return up(rest);
    default:
      console.error(`kubeloop: unknown command "${cmd}": try kubeloop help`);
      return 2;
  }
}

async function kubeconfig(argv: readonly string[]): Promise<number> {
  const pathOnly = argv.includes('--path');
  const opts = await options(argv.filter((a) => a !== '--path'));
  if (!opts) return 2;
  const file = join(opts.stateDir, 'kubeconfig');
  if (pathOnly) {
    console.log(file);
    return 0;
  }
  try {
    process.stdout.write(readFileSync(file, 'utf8'));
    return 0;
  } catch {
    console.error(`kubeloop: no kubeconfig at ${file}: start the daemon with kubeloop up (same --state-dir) first`);
    return 1;
  }
}

async function status(argv: readonly string[]): Promise<number> {
  const opts = await options(argv);
  if (!opts) return 2;
  const { statusText } = await import('./status.js');
  try {
    console.log(await statusText(opts));
    return 0;
  } catch (e) {
    console.error(`kubeloop: ${(e as Error).message}`);
    return 1;
  }
}

async function up(argv: readonly string[]): Promise<number> {
  // work start-up does not need waits for its end (util/after-startup.ts), not for a delay
  startupBegins();
  // the daemon's modules load while the options are read
  const modules = Promise.all([import('./daemon.js'), import('./logger.js')]);
  modules.catch(() => undefined);
  const opts = await options(argv);
  if (!opts) return 2;
  const [{ Daemon }, { createLogger }] = await modules;
  const tty = process.stderr.isTTY === true;
  const logger = await createLogger(opts.logLevel, tty);
  const log = logger.log;
  const daemon = new Daemon(opts, log);
  const stopAsked = installSignalHandlers(daemon, log);
  // under npm (npm start, npx kubeloop) a signal to npm may end npm and its shell but not us
  if (process.env.npm_command) watchParent(() => stopAsked('parent process (npm) exited'));
  try {
    await daemon.start();
  } catch (e) {
    console.error(`kubeloop: ${(e as Error).message}`);
    await daemon.stop();
    return 1;
  }
  const res = await daemon.applyFiles();
  for (const a of res.applied) log.info({ obj: a.ref }, `${a.ref} ${a.action}`);
  for (const p of res.problems) console.error(`kubeloop: ${p}`);
  const settled = await daemon.waitSettled(opts.readyTimeoutMs);
  console.log('');
  console.log(daemon.table());
  console.log('');
  printListenerErrors(daemon.listenerErrors());
  if (daemon.clusterDnsProblem) console.log(daemon.clusterDnsProblem);
  if (!settled) console.log(`(some pods were not ready after ${opts.readyTimeoutMs} ms; their endpoints join as they become ready)`);
  const dns = daemon.dnsPort ? `${opts.dnsAddr.slice(0, opts.dnsAddr.lastIndexOf(':'))} -p ${daemon.dnsPort}` : undefined;
  if (daemon.apiUrl) console.log(`API:   ${daemon.apiUrl}    export KUBECONFIG=${daemon.kubeconfigPath}`);
  if (dns) {
    const [host] = opts.dnsAddr.split(':');
    console.log(`DNS:   dig @${dns} <service>.<namespace>.svc.${opts.clusterDomain}`);
    console.log(`       route only ${opts.clusterDomain} to it: sudo resolvectl dns lo ${host}:${daemon.dnsPort} && sudo resolvectl domain lo '~${opts.clusterDomain}'`);
    console.log(`       (macOS: printf 'nameserver ${host}\\nport ${daemon.dnsPort}\\n' | sudo tee /etc/resolver/${opts.clusterDomain})`);
  }
  if (daemon.metricsUrl) console.log(`Metrics: ${daemon.metricsUrl}`);
  if (opts.proxyProcesses > 1) {
    console.log(`Proxy: ${opts.proxyProcesses} processes accept on TCP Service ports (round robin per process; ClientIP-affinity and UDP ports in the daemon)`);
  }
  if (daemon.createdJoinToken) {
    const { joinCommand } = await import('./join.js');
    console.log(`Join:  this daemon created the cluster on its store; the join token is shown once (kept in ${join(opts.stateDir, 'join-token')}). On the next machine:`);
    console.log(`       ${joinCommand(opts.store, daemon.createdJoinToken, opts.storePassword !== '')}`);
  }
  console.log(`State: ${opts.stateDir} (pod logs under pods/)`);
  // on a terminal, later log lines go to a file so they do not push the table off the screen
  if (tty && !argv.some((a) => a === '--log-level' || a.startsWith('--log-level='))) {
    const file = join(opts.stateDir, 'kubeloop.log');
    try {
      logger.divert(file);
      console.log(`Logs:  ${file} (--log-level LEVEL shows them here instead); kubeloop status prints this table again`);
    } catch (err) {
      log.warn({ err, file }, `cannot write ${file}: logging here instead`);
    }
  }
  console.log('kubeloop is running; Ctrl-C stops it and every pod.');
  startupOver();
  return new Promise<number>(() => {
    // runs until a signal; the handler exits the process
  });
}

/** One line per failed listener; privileged-port failures (the common case) share one line. */
function printListenerErrors(errors: ReadonlyArray<{ address: string; portNumber: number; message: string }>): void {
  const privileged = errors.filter((e) => e.portNumber < 1024 && /permission denied/.test(e.message));
  for (const e of errors) if (!privileged.includes(e)) console.log(`not listening: ${e.message}`);
  if (privileged.length) {
    const where = privileged.map((e) => `${e.address}:${e.portNumber}`).join(', ');
    const fix = privileged[0].message.slice(privileged[0].message.indexOf('ports below 1024'));
    console.log(`not listening on ${where}: ${fix}`);
  }
}

/**
 * Stop signals → a graceful stop (see signals.ts). Returns a function that asks for the same stop
 * for another reason; it is a no-op once a stop is under way (Ctrl-C under npx reaches the daemon
 * and ends its parent too: that must not count as a second signal, which exits at once).
 */
function installSignalHandlers(daemon: Daemon, log: Logger): (reason: string) => void {
  const state: SignalState = { repeated: false };
  const onSignal = (sig: NodeJS.Signals) => {
    const action = stopSignal(state, sig, Date.now());
    if (action === 'same') return log.info({ sig }, 'signal repeated at once (npm forwards it too): still stopping; signal again to exit now');
    if (action === 'exit') {
      log.warn({ sig }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ sig }, 'stopping');
    daemon.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  // "nothing crashes the daemon": a bug in one connection or handler is logged, not fatal
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception (kept running)'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection (kept running)'));
  return (reason) => {
    if (state.first) return log.info(`${reason}: already stopping`);
    log.info(`${reason}: stopping`);
    onSignal('SIGTERM');
  };
}
