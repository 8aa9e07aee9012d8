/**
 * util/after-startup.ts: deferred work runs after a fallback delay where nobody announced a
 * start-up, only once start-up is over (plus its grace) where `up` announced one, and once.
 */
import t from 'tap';
import { afterStartup, startupBegins, startupOver } from '../../src/util/after-startup.js';
import { waitFor } from '../helpers/wait.js';

// one process, one sequence: the module's state is the process's
t.test('fallback, then announced start-up, then over', async (t) => {
  const ran: string[] = [];
  const t0 = Date.now();
  afterStartup(() => ran.push('fallback'), 50);
  await waitFor(() => ran.includes('fallback'), { timeoutMs: 5000 });
  t.ok(Date.now() - t0 >= 45, 'not before its fallback delay');

  afterStartup(() => ran.push('queued before begins'), 50);
  startupBegins();
  afterStartup(() => ran.push('queued while starting'), 1);
  await new Promise((r) => setTimeout(r, 200));
  t.same(ran, ['fallback'], 'once a start-up is announced, fallback delays no longer run anything');

  const over = Date.now();
  startupOver(100);
  await waitFor(() => ran.length === 3, { timeoutMs: 5000 });
  t.ok(Date.now() - over >= 95, 'after the grace');
  t.same(ran.slice(1).sort(), ['queued before begins', 'queued while starting']);

  afterStartup(() => ran.push('late'));
  await waitFor(() => ran.includes('late'), { timeoutMs: 5000 });
  await new Promise((r) => setTimeout(r, 150));
  t.equal(ran.length, 4, 'each ran once');
});
