import { proxyCases } from './proxy-cases.js';

// test/proxy.test.ts's cases on the node:net data path (KUBELOOP_DATA_PATH=net / --data-path net),
// leaving out the two that exercise only the proxier's bookkeeping, not the sockets, and the one
// about the libuv path's per-length buffer reuse (20 s of paced writes; net has no such buffers)
proxyCases({
  dataPath: 'net',
  subnet: 11,
  skip: [
    'a service update reopens only its changed portals; other connections survive',
    'headless and ExternalName services get no listener; LB ingress IPs are served when local',
    'many small messages to a stalled reader: the bytes of pending writes are never overwritten',
  ],
});
