// tap's `node-arg`: load tap itself before registering tsx's loader hooks, so tap's few hundred
// modules are not resolved through the hooks (which run on their own thread: every import is a
// round trip). Saves ~0.4 CPU-s in each of the suite's test processes; the TypeScript of tests
// and src/ still loads through tsx.
import 'tap';
import { register } from 'tsx/esm/api';

register();
