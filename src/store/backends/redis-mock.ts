/**
 * Loads `ioredis-mock` (the embedded keyspace) without letting its bundled dependencies' import-
 * time probes of Node internals reach the process: the copy of lodash it bundles calls
 * `process.binding('util')` inside a try while it loads (DEP0111). Under the permission model
 * that throws into the try and is harmless; under `--throw-deprecation` the warning alone would
 * end the daemon, and under `--pending-deprecation` it prints a stack that is not ours to fix.
 * Only that one warning, and only while the module loads, is dropped; every other warning passes.
 * (fengari's `readline-sync`, which probed `tty_wrap` the same way, is replaced by
 * src/vendor/readline-sync through package.json `overrides`.)
 */
import type RedisMockType from 'ioredis-mock';

export type RedisMock = typeof RedisMockType;

let loaded: Promise<RedisMock> | undefined;

export function loadRedisMock(): Promise<RedisMock> {
  loaded ??= (async () => {
    const emit = process.emitWarning;
    process.emitWarning = function (this: NodeJS.Process, warning: string | Error, ...rest: unknown[]): void {
      const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
      const text = typeof warning === 'string' ? warning : warning.message;
      if (code === 'DEP0111' || /process\.binding\(\) is deprecated/.test(text)) return;
      (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
    } as typeof process.emitWarning;
    try {
      return (await import('ioredis-mock')).default;
    } finally {
      process.emitWarning = emit;
    }
  })();
  return loaded;
}
