/** util/fd-budget.ts fitBudget: the caps as given when together they fit a third of RLIMIT_NOFILE, else scaled down in proportion. */
import t from 'tap';
import { CAPPED_SHARE, DEFAULT_FD_BUDGET, fitBudget, listenerRoom, proxyReserve } from '../../src/util/fd-budget.js';

t.test('fitBudget', async (t) => {
  t.same(fitBudget(DEFAULT_FD_BUDGET, 20_000), { budget: { ...DEFAULT_FD_BUDGET }, scaled: false }, 'the defaults fit a limit of 20,000');
  t.same(fitBudget(DEFAULT_FD_BUDGET, 1_048_576).scaled, false);
  t.same(fitBudget(DEFAULT_FD_BUDGET, undefined), { budget: { ...DEFAULT_FD_BUDGET }, scaled: false }, 'an unknown limit keeps the caps');
  t.same(fitBudget(DEFAULT_FD_BUDGET, Infinity).scaled, false, 'unlimited keeps the caps');
  const small = fitBudget(DEFAULT_FD_BUDGET, 4096);
  t.equal(small.scaled, true, 'a limit of 4,096 scales them');
  t.same(small.budget, { dnsTcpConnections: 269, apiConnections: 1078, metricsConnections: 17 }, 'in proportion');
  t.ok(small.budget.dnsTcpConnections + small.budget.apiConnections + small.budget.metricsConnections <= Math.floor(4096 / 3), 'within a third of the limit');
  t.same(fitBudget({ dnsTcpConnections: 5, apiConnections: 5, metricsConnections: 5 }, 3).budget, { dnsTcpConnections: 1, apiConnections: 1, metricsConnections: 1 }, 'never below 1');
});

t.test('listenerRoom: the limit less the caps, the reserve and what is open', async (t) => {
  t.equal(proxyReserve(216), 64, 'at least 64');
  t.equal(proxyReserve(20_000), 2500, 'an eighth');
  t.equal(listenerRoom(216, 100, 32), 20);
  t.equal(listenerRoom(216, 100, 60), 0, 'never below 0');
  t.equal(listenerRoom(20_000, 5064, 100), 20_000 - 5064 - 2500 - 100);
  // every cap full on top of every listener the room allowed still leaves the reserve
  for (const limit of [256, 1024, 4096, 20_000, 524_288]) {
    const { budget } = fitBudget(DEFAULT_FD_BUDGET, limit);
    const caps = budget.dnsTcpConnections + budget.apiConnections + budget.metricsConnections;
    t.ok(caps <= limit * CAPPED_SHARE, `${limit}: caps within their share`);
    const open = 40;
    const listeners = listenerRoom(limit, caps, open);
    t.equal(limit - (open + listeners + caps), proxyReserve(limit), `${limit}: ${listeners} listeners and the caps leave the reserve`);
  }
});
