/**
 * What a Redis store's credentials leave open to other users, as warnings for the log at start:
 *  - no password (neither in the URL nor `$KUBELOOP_REDIS_PASSWORD`) and Redis let us in: every
 *    local user, and whoever reaches the server's address, can read and write the cluster's
 *    objects — Secrets, and pods the daemon then runs as its own user;
 *  - a password in the URL: it is in the daemon's argv, which `ps` shows every local user.
 * The password itself is never part of a warning.
 */
import { parseRedisUrl } from '../store/backends/redis-url.js';

export function storeCredentialWarnings(url: string, envPassword: string | undefined): string[] {
  let target;
  try {
    target = parseRedisUrl(url, envPassword);
  } catch {
    return []; // a bad URL fails the start with its own message
  }
  const where = `${target.host}:${target.port}`;
  const out: string[] = [];
  if (!target.password) {
    out.push(
      `the store ${target.redacted} has no password: every local user (and anyone who reaches ${where}) can read its Secrets and create pods this daemon runs as its user — set requirepass on the Redis and give the password in $KUBELOOP_REDIS_PASSWORD`,
    );
  } else if (new URL(url).password) {
    out.push(`the --store URL carries the Redis password: every local user sees it in this process's arguments (ps) — give it in $KUBELOOP_REDIS_PASSWORD instead`);
  }
  return out;
}
