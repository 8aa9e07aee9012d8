/** Small statistics helpers of the benchmark suite. */

export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** nearest-rank percentile, p in [0, 100] */
export function percentile(xs: readonly number[], p: number): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/**
 * median of the per-round ratios a[i] / b[i] (pairs measured side by side in the same round);
 * rounds where either value is not positive (a memory delta lost in GC noise) are left out,
 * and NaN is returned unless most rounds remain
 */
export function pairedRatio(a: readonly number[], b: readonly number[]): number {
  const r: number[] = [];
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (Number.isFinite(a[i]) && Number.isFinite(b[i]) && a[i]! > 0 && b[i]! > 0) r.push(a[i]! / b[i]!);
  }
  return r.length * 2 > n ? median(r) : NaN;
}

/** 3 significant digits, thousands grouped */
export function fmt(x: number | undefined, digits = 3): string {
  if (x === undefined || !Number.isFinite(x)) return '—';
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString('en-US');
  return Number(x.toPrecision(digits)).toString();
}
