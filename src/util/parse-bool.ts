/** the spellings Go's `strconv.ParseBool` accepts, as kube-apiserver and the kubelet decode boolean parameters */
const BOOLS: ReadonlyMap<string, boolean> = new Map([
  ...['1', 't', 'T', 'TRUE', 'true', 'True'].map((s) => [s, true] as const),
  ...['0', 'f', 'F', 'FALSE', 'false', 'False'].map((s) => [s, false] as const),
]);

/** Go's `strconv.ParseBool`: true/false, or undefined for any other spelling. */
export function parseGoBool(v: string): boolean | undefined {
  return BOOLS.get(v);
}
