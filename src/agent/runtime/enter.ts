/**
 * Entering a running container's namespaces (`kubectl exec`, and ephemeral containers that
 * target a container), with util-linux `nsenter`:
 *
 *   nsenter --user=/proc/L/ns/user --mount=/proc/L/ns/mnt --pid=/proc/P1/ns/pid -t P1 -w -- [execPrefix] argv
 *
 * L is the container's group leader (the sandbox's `unshare`, which holds the user and mount
 * namespaces), P1 its child, pid 1 of the container's PID namespace (its cwd is the container's
 * working dir as the container sees it: `-w`). Only namespaces that differ from the daemon's
 * are entered. Entering a user namespace made by `--map-root-user` makes the command root in
 * it: the sandbox's `execPrefix` maps it back to the daemon's uid, as the container's program
 * was; one made by `--map-current-user` keeps the uid (`--preserve-credentials`).
 */
import { readFile, readlink } from 'node:fs/promises';
import type { ExecTarget } from './container.js';

const NSENTER = '/usr/bin/nsenter';

const nsId = async (file: string): Promise<string | undefined> => readlink(file).catch(() => undefined);

/** pid 1 of the container's PID namespace: the leader's first child */
async function firstChild(leader: number): Promise<number | undefined> {
  const text = await readFile(`/proc/${leader}/task/${leader}/children`, 'utf8').catch(() => '');
  const pid = Number(text.trim().split(/\s+/)[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** the nsenter prefix for `t` (empty: run on the host as is) and whether it sets the cwd itself */
export async function enterPrefix(t: ExecTarget): Promise<{ prefix: string[]; setsCwd: boolean }> {
  if (t.sandbox.kind !== 'pidns') return { prefix: [], setsCwd: false };
  const leader = t.pid;
  const p1 = await firstChild(leader);
  if (p1 === undefined) throw new Error(`container process ${leader} has no pid 1 in its namespace (it is starting or ending): try again`);
  const differs = async (ns: string, pid: number): Promise<boolean> => {
    const theirs = await nsId(`/proc/${pid}/ns/${ns}`);
    return theirs !== undefined && theirs !== (await nsId(`/proc/self/ns/${ns}`));
  };
  const args = [NSENTER];
  const user = await differs('user', leader);
  const mnt = await differs('mnt', leader);
  if (user) args.push(`--user=/proc/${leader}/ns/user`);
  if (mnt) args.push(`--mount=/proc/${leader}/ns/mnt`);
  args.push(`--pid=/proc/${p1}/ns/pid`);
  if (mnt) args.push('-t', String(p1), '-w');
  const mapBack = user && t.sandbox.execPrefix.length > 0;
  if (user && !mapBack) args.push('--preserve-credentials');
  args.push('--', ...(mapBack ? t.sandbox.execPrefix : []));
  return { prefix: args, setsCwd: mnt };
}

