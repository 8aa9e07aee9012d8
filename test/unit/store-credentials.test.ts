/**
 * cli/store-credentials.ts: a Redis store without a password, or with its password on the
 * command line, is named at start; the warning never holds the password.
 */
import t from 'tap';
import { storeCredentialWarnings } from '../../src/cli/store-credentials.js';

t.test('store credential warnings', async (t) => {
  t.same(storeCredentialWarnings('embedded', undefined), [], 'not a Redis URL: nothing');
  let w = storeCredentialWarnings('redis://127.0.0.1:6379', undefined);
  t.equal(w.length, 1);
  t.match(w[0], /has no password: every local user \(and anyone who reaches 127\.0\.0\.1:6379\) can read its Secrets/);
  t.same(storeCredentialWarnings('redis://127.0.0.1:6379', 'from-env-s3cret'), [], 'the password from the environment: nothing');
  w = storeCredentialWarnings('redis://:url-s3cret@127.0.0.1:6379/0', undefined);
  t.equal(w.length, 1);
  t.match(w[0], /carries the Redis password: every local user sees it .*\$KUBELOOP_REDIS_PASSWORD/);
  w = storeCredentialWarnings('rediss://user:url-s3cret@redis.example:6380', 'env');
  t.equal(w.length, 1, 'the URL wins over the environment: still on argv');
  for (const line of [...w, ...storeCredentialWarnings('redis://user:url-s3cret@h:1', undefined)]) t.notMatch(line, /s3cret/, 'no password in a warning');
});
