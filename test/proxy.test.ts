import { proxyCases } from './proxy-cases.js';

// the data path chosen as the daemon chooses it (libuv handles where they load cleanly);
// test/proxy-net.test.ts runs the same cases on the node:net path
proxyCases({ dataPath: 'auto', subnet: 10 });
