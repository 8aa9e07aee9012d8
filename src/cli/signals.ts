/**
 * What the daemon does with a stop signal (SIGINT, SIGTERM, SIGHUP), given the ones before it.
 *
 * Under `npm start` a terminal's Ctrl-C reaches the daemon twice within milliseconds: from the
 * terminal (the whole foreground process group gets it) and forwarded by npm. So one repeat of
 * the first signal, within SAME_SIGNAL_MS, is the same request; any other signal after the
 * first means "exit now" (a stop that hangs can always be cut short by signalling again).
 */
export type SignalAction = 'stop' | 'same' | 'exit';

export const SAME_SIGNAL_MS = 500;

export interface SignalState {
  first?: { sig: string; at: number };
  repeated: boolean;
}

export function stopSignal(state: SignalState, sig: string, now: number): SignalAction {
  const first = state.first;
  if (!first) {
    state.first = { sig, at: now };
    return 'stop';
  }
  if (!state.repeated && sig === first.sig && now - first.at < SAME_SIGNAL_MS) {
    state.repeated = true;
    return 'same';
  }
  return 'exit';
}

/**
 * Calls `onGone` once when this process's parent exits (it is re-parented: `process.ppid`
 * changes). `npx kubeloop up` runs npm → `sh -c` → node: a SIGTERM to npx ends npm and the
 * shell but reaches no further, so the daemon would keep running with its pods; polling the
 * parent is the one check that sees every way that chain can end. The timer is unref'd.
 * Returns a function that stops watching.
 */
export function watchParent(onGone: () => void, intervalMs = 200): () => void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onGone();
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
