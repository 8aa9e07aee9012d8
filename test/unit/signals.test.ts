import t from 'tap';
import { SAME_SIGNAL_MS, type SignalState, stopSignal } from '../../src/cli/signals.js';

const fresh = (): SignalState => ({ repeated: false });

t.test('the first signal stops; its repeat at once (npm forwarding it) is the same request', async (t) => {
  const s = fresh();
  t.equal(stopSignal(s, 'SIGINT', 1000), 'stop');
  t.equal(stopSignal(s, 'SIGINT', 1002), 'same', 'the forwarded copy of a Ctrl-C');
  t.equal(stopSignal(s, 'SIGINT', 1100), 'exit', 'another Ctrl-C soon after: exit now (only one repeat is absorbed)');
});

t.test('a repeat after the window, or another signal, exits at once', async (t) => {
  const late = fresh();
  stopSignal(late, 'SIGTERM', 0);
  t.equal(stopSignal(late, 'SIGTERM', SAME_SIGNAL_MS - 1), 'same', 'just inside the window');
  const after = fresh();
  stopSignal(after, 'SIGTERM', 0);
  t.equal(stopSignal(after, 'SIGTERM', SAME_SIGNAL_MS), 'exit', 'at the window');
  const other = fresh();
  stopSignal(other, 'SIGTERM', 0);
  t.equal(stopSignal(other, 'SIGINT', 1), 'exit', 'a different signal is not a copy');
});
