import { readFile, readdir } from 'node:fs/promises';

/** RLIMIT_NOFILE of this process; `Infinity` stands for "unlimited". */
export interface NofileLimit {
  soft: number;
  hard: number;
}

/** `/proc/<pid>/limits` text → RLIMIT_NOFILE, or undefined when the line is missing or unreadable. */
export function parseNofile(limitsText: string): NofileLimit | undefined {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(limitsText);
  if (!m) return undefined;
  const n = (s: string) => (s === 'unlimited' ? Infinity : Number(s));
  return { soft: n(m[1]), hard: n(m[2]) };
}

/** This process's RLIMIT_NOFILE from /proc (Linux); undefined elsewhere or when /proc cannot be read. */
export async function readNofile(): Promise<NofileLimit | undefined> {
  try {
    return parseNofile(await readFile('/proc/self/limits', 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Descriptors this process holds now (Linux /proc/self/fd, minus the one the listing itself
 * uses); undefined where there is no /proc. Rejects with EMFILE when none is left to list them.
 */
export async function openFds(): Promise<number | undefined> {
  try {
    return (await readdir('/proc/self/fd')).length - 1;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EMFILE' || code === 'ENFILE') throw e;
    return undefined;
  }
}
