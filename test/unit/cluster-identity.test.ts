import t from 'tap';
import { IDENTITY_KEYS, IdentityUnreadable, openIdentity, sealIdentity } from '../../src/cli/cluster-identity.js';

const id = { caCert: 'CA CERT', caKey: 'CA KEY', adminCert: 'ADMIN CERT', adminKey: 'ADMIN KEY' };

t.test('the token opens what it sealed; a wrong token or changed bytes cannot', async (t) => {
  const data = await sealIdentity('right-token', id);
  t.same(Object.keys(data).sort(), Object.values(IDENTITY_KEYS).sort());
  t.same(await openIdentity('right-token', data), id, 'the same token opens it');
  const again = await sealIdentity('right-token', id);
  t.not(again[IDENTITY_KEYS.salt], data[IDENTITY_KEYS.salt], 'a fresh salt each time');
  t.not(again[IDENTITY_KEYS.sealed], data[IDENTITY_KEYS.sealed], 'so a fresh ciphertext');

  await t.rejects(openIdentity('wrong-token', data), new IdentityUnreadable('this token cannot decrypt the cluster identity: it is not the token the cluster was made with (or the sealed data in kube-system/kubeloop-join was changed)'));
  const bytes = Buffer.from(data[IDENTITY_KEYS.sealed], 'base64');
  bytes[3] ^= 1;
  await t.rejects(openIdentity('right-token', { ...data, [IDENTITY_KEYS.sealed]: bytes.toString('base64') }), /cannot decrypt/, 'a flipped bit fails the tag');
  await t.rejects(openIdentity('right-token', { ...data, [IDENTITY_KEYS.iv]: '' }), /damaged/, 'a missing iv');
});
