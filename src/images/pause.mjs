// @ts-check
/**
 * Built-in `pause`: what a busybox-like image runs with neither `command` nor `args`. It does
 * nothing until SIGTERM/SIGINT and then exits 0.
 */
import { exitOnSignal } from './lib.mjs';

exitOnSignal('pause', []);
setInterval(() => {}, 2 ** 30);
process.stdout.write('pause: idle until SIGTERM\n');
