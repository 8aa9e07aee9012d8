/**
 * A set of non-negative whole numbers kept as sorted, disjoint, non-adjacent inclusive runs
 * (upstream's `orderedIntervals` for `status.completedIndexes`): memory and work follow the
 * number of runs, never the count of numbers, so `"0-999999999"` is one pair, not a billion
 * entries.
 */
export class IndexIntervals {
  /** [first, last] pairs, ascending; two runs never touch (they would be one) */
  readonly #runs: Array<[number, number]> = [];

  /**
   * `"0-2,4"` as upstream's `parseIndexesFromString`: parts that are not `N` or `N-M` are skipped,
   * numbers at or past `limit` (the Job's completions) are dropped.
   */
  static parse(text: string | undefined, limit = Number.MAX_SAFE_INTEGER): IndexIntervals {
    const out = new IndexIntervals();
    for (const part of (text ?? '').split(',')) {
      const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
      if (!m) continue;
      const first = Number(m[1]);
      const last = Math.min(Number(m[2] ?? m[1]), limit - 1);
      if (first <= last) out.addRange(first, last);
    }
    return out;
  }

  /** how many numbers the set holds */
  get size(): number {
    let n = 0;
    for (const [a, b] of this.#runs) n += b - a + 1;
    return n;
  }

  has(i: number): boolean {
    const k = this.#runAtOrBefore(i);
    return k >= 0 && this.#runs[k][1] >= i;
  }

  add(i: number): void {
    this.addRange(i, i);
  }

  addRange(first: number, last: number): void {
    // runs that overlap or touch [first, last] merge into one
    let lo = this.#runAtOrBefore(first);
    if (lo < 0 || this.#runs[lo][1] < first - 1) lo++;
    let hi = lo;
    while (hi < this.#runs.length && this.#runs[hi][0] <= last + 1) hi++;
    const merged: [number, number] =
      hi > lo ? [Math.min(first, this.#runs[lo][0]), Math.max(last, this.#runs[hi - 1][1])] : [first, last];
    this.#runs.splice(lo, hi - lo, merged);
  }

  /**
   * The first `max` numbers of [0, end) in neither this set nor `skip`, found by jumping over the
   * runs: work is runs + skip.size + max, whatever `end` is.
   */
  missing(end: number, max: number, skip: ReadonlySet<number | undefined> = new Set()): number[] {
    const out: number[] = [];
    let k = 0;
    for (let i = 0; i < end && out.length < max; i++) {
      while (k < this.#runs.length && this.#runs[k][1] < i) k++;
      if (k < this.#runs.length && this.#runs[k][0] <= i) {
        i = this.#runs[k][1];
        continue;
      }
      if (!skip.has(i)) out.push(i);
    }
    return out;
  }

  /** `"0-2,4"`, as `status.completedIndexes` */
  format(): string {
    return this.#runs.map(([a, b]) => (a === b ? String(a) : `${a}-${b}`)).join(',');
  }

  /** index of the last run starting at or before `i`, -1 when none */
  #runAtOrBefore(i: number): number {
    let lo = 0;
    let hi = this.#runs.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.#runs[mid][0] <= i) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }
}
