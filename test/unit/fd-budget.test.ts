/** util/fd-budget.ts fitBudget: the caps as given when together they fit a third of RLIMIT_NOFILE, else scaled down in proportion. */
import t from 'tap';
import { DEFAULT_FD_BUDGET, fitBudget } from '../../src/util/fd-budget.js';

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
