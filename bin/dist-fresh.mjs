// Is dist/ a complete build of the current sources? Shared by bin/kubeloop.mjs (which runs
// dist/ only when it is) and bin/build.mjs (which skips tsc when it is: `npx kubeloop` installs
// the checkout into npm's cache and runs its `prepare` script on every first use).
import { readFileSync, readdirSync, statSync } from 'node:fs';

/** The build's inputs besides src/: a change to one of them also makes dist/ stale. */
const INPUTS = ['tsconfig.json', 'tsconfig.build.json'];

/** true when `<root>dist/.built` (written last by bin/build.mjs) is newer than every input */
export function distIsFresh(root) {
  let builtAt;
  try {
    builtAt = Number(readFileSync(`${root}dist/.built`, 'utf8'));
  } catch {
    return false;
  }
  let entries;
  try {
    entries = readdirSync(`${root}src`, { recursive: true });
  } catch {
    return true; // an installed package ships dist/ only
  }
  for (const e of [...entries.map((x) => `src/${x}`), ...INPUTS]) {
    try {
      if (statSync(`${root}${e}`).mtimeMs >= builtAt) return false;
    } catch {
      // removed while we looked (or not shipped): a rebuild would not bring it back either
    }
  }
  return true;
}
