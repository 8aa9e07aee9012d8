/** policy/v1 PodDisruptionBudget: stored and validated; its status is not computed (no disruption controller, no eviction API). */
import { defineKind, infoOf } from '../kind.js';
import { validatePodDisruptionBudget } from '../validation/ingress-pdb.js';
import { withMetaUpdate } from './meta-only.js';

type Rec = Record<string, unknown>;
const specOf = (o: Rec): Rec => (o.spec as Rec | undefined) ?? {};

export const podDisruptionBudget = defineKind({
  info: infoOf('PodDisruptionBudget', 'policy/v1', 'poddisruptionbudgets', { shortNames: ['pdb'], hasStatus: true }),
  model: 'V1PodDisruptionBudget',
  validate: withMetaUpdate(validatePodDisruptionBudget),
  // upstream `podDisruptionBudgetColumnDefinitions`: Name, Min Available, Max Unavailable, Allowed Disruptions, Age
  columns: [
    { name: 'Min Available', value: (o) => String(specOf(o).minAvailable ?? 'N/A') },
    { name: 'Max Unavailable', value: (o) => String(specOf(o).maxUnavailable ?? 'N/A') },
    { name: 'Allowed Disruptions', type: 'integer', value: (o) => Number((o.status as Rec | undefined)?.disruptionsAllowed ?? 0) },
  ],
});
