export interface WaitOptions {
  /** give up after this long; default 5000 ms */
  timeoutMs?: number;
  /** poll every this often; default 10 ms */
  intervalMs?: number;
  /** named in the timeout error */
  what?: string;
}

/**
 * Polls `fn` until it returns a truthy value and resolves to that value; rejects after
 * `timeoutMs` with the last value (or error) seen, so a failure says what the world looked like.
 */
export async function waitFor<T>(fn: () => T | Promise<T>, opts: WaitOptions = {}): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const intervalMs = opts.intervalMs ?? 10;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      const seen = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? 'condition'} (last: ${seen})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
