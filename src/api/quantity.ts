/**
 * Resource quantities (`500m`, `128Mi`, `1e3`) read as numbers, and the canonical forms the
 * metrics API writes: CPU in nanocores (`12345n`) and memory in kibibytes (`2048Ki`), as
 * metrics-server reports them.
 */

const SUFFIX: Readonly<Record<string, number>> = {
  n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

const QUANTITY = /^([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)(?:([eE][+-]?\d+)|(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei))?$/;

/** The value of a quantity (a number is taken as it is), or undefined when it is not one. */
export function quantityValue(q: unknown): number | undefined {
  if (typeof q === 'number') return Number.isFinite(q) ? q : undefined;
  if (typeof q !== 'string') return undefined;
  const m = QUANTITY.exec(q.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  return m[2] ? n * 10 ** Number(m[2].slice(1)) : n * SUFFIX[m[3] ?? ''];
}

/** CPU cores as metrics-server writes them: whole nanocores (`250000000n`; `0` for none). */
export const nanocores = (cores: number): string => {
  const n = Math.max(0, Math.round(cores * 1e9));
  return n === 0 ? '0' : `${n}n`;
};

/** Bytes as metrics-server writes them: whole kibibytes (`10240Ki`). */
export const kibibytes = (bytes: number): string => {
  const k = Math.max(0, Math.round(bytes / 1024));
  return k === 0 ? '0' : `${k}Ki`;
};

/** CPU cores in the form `kubectl` prints and HPA status carries: millicores (`250m`). */
export const millicores = (cores: number): string => `${Math.max(0, Math.round(cores * 1000))}m`;
