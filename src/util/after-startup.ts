/**
 * Work that start-up does not need (warming a parser, reading documentation text, loading what
 * only some later request wants) waits until start-up is over, so it does not compete with it
 * for the one thread: `kubeloop up` says when it begins and when it is over (its table printed).
 * In a process that never says it begins (a test building one component), such work runs after
 * a fallback delay instead. The work must also be reachable on demand: this only chooses when it
 * happens unasked.
 */
type State = 'unknown' | 'starting' | 'over';

let state: State = 'unknown';
/** deferred work → its fallback timer (none once a start-up was announced) */
const queued = new Map<() => void, NodeJS.Timeout | undefined>();

/** Runs `fn` once start-up is over (or after `fallbackMs` where nobody announced a start-up). */
export function afterStartup(fn: () => void, fallbackMs = 2000): void {
  if (state === 'over') {
    setImmediate(fn).unref();
    return;
  }
  const run = (): void => {
    if (!queued.has(run)) return;
    clearTimeout(queued.get(run));
    queued.delete(run);
    fn();
  };
  queued.set(run, state === 'unknown' ? setTimeout(run, fallbackMs).unref() : undefined);
}

/** The process is starting and will call `startupOver()`: deferred work waits for that, not for a delay. */
export function startupBegins(): void {
  if (state !== 'unknown') return;
  state = 'starting';
  for (const [run, timer] of queued) {
    clearTimeout(timer);
    queued.set(run, undefined);
  }
}

/**
 * Start-up is over: deferred work runs `graceMs` later (the user's first requests, right after
 * the table, do not meet it), one item per turn of the event loop.
 */
export function startupOver(graceMs = 1000): void {
  state = 'over';
  const t = setTimeout(() => {
    for (const run of [...queued.keys()]) setImmediate(run).unref();
  }, graceMs);
  t.unref();
}
