/** Acting as a second, unprivileged local user (`nobody`) in tests that check what it cannot do. */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Runs a command to its end; never rejects. A command that exits before reading its stdin is fine. */
export function run(cmd: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, stdout, stderr }),
    );
    // `cat` of a file it may not open exits at once: EPIPE here is that, not a failure
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

/** uid/gid of a second, unprivileged user, or why there is none (the reason to skip with). */
export function otherUser(): { uid: number; gid: number; name: string } | string {
  if (process.getuid?.() !== 0) return 'not running as root: cannot act as a second user';
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('nobody:'));
  if (!line) return 'no user "nobody" on this machine';
  const [, , uid, gid] = line.split(':');
  return { name: 'nobody', uid: Number(uid), gid: Number(gid) };
}
