/**
 * exec and attach on an accepted channel WebSocket (channels.ts): wires the command's (or the
 * container log's) bytes to the channels and reports the end on the error channel.
 */
import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { ExecTarget } from '../runtime/index.js';
import { ERROR, Outbox, type Resize, STDERR, STDOUT, exitStatus, failureStatus, readChannels, send } from './channels.js';
import { startExec } from './exec.js';

export interface StreamOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** Streams until the command ends or the client leaves; never rejects. */
export async function serveExec(ws: WebSocket, t: ExecTarget, command: readonly string[], o: StreamOptions, log: Logger): Promise<void> {
  // a resize may come before the process does: the first one sizes the pty
  let size: Resize | undefined;
  let proc: Awaited<ReturnType<typeof startExec>> | undefined;
  const pendingIn: Buffer[] = [];
  let inEnded = false;
  readChannels(ws, {
    // a command that does not read its stdin holds the client back (no unbounded buffer here)
    stdin: (b) => {
      if (!proc) pendingIn.push(b);
      else if (!proc.stdin.write(b)) {
        ws.pause();
        proc.stdin.once('drain', () => ws.resume());
      }
    },
    stdinEnd: () => {
      inEnded = true;
      proc?.stdin.end();
    },
    resize: (r) => {
      size = r;
      firstSize?.();
      proc?.resize(r.width, r.height);
    },
  });
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  // the client's first resize sizes the pty before the command starts (kubectl sends it at
  // once, from its own goroutine: on a busy machine it can come well after the stream opened,
  // and a shell started at 80x24 has already drawn its prompt at that size). Waits for it up to
  // 500 ms; a client that sends none (not every one does) starts at the pty's default size.
  let firstSize: (() => void) | undefined;
  if (o.tty && !size) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((r) => {
        firstSize = r;
        timer = setTimeout(r, 500);
      }),
      closed,
    ]);
    clearTimeout(timer);
    firstSize = undefined;
  }
  try {
    proc = await startExec(t, command, { tty: o.tty, size });
  } catch (err) {
    send(ws, ERROR, JSON.stringify(failureStatus(`cannot exec in the container: ${(err as Error).message}`)));
    ws.close(1000);
    return;
  }
  const p = proc;
  for (const b of pendingIn) p.stdin.write(b);
  if (inEnded || !o.stdin) p.stdin.end();
  const out = new Outbox(ws);
  const stdout = p.child.stdout!;
  const stderr = p.child.stderr!;
  stdout.on('data', (b: Buffer) => o.stdout && out.send(STDOUT, b, stdout));
  stderr.on('data', (b: Buffer) => (o.tty ? out.send(STDOUT, b, stderr) : o.stderr && out.send(STDERR, b, stderr)));
  const gone = closed.then(() => p.kill());
  try {
    const code = await Promise.race([p.exited, closed.then(() => undefined)]);
    if (code === undefined) return;
    log.debug({ command: command[0], code }, 'exec ended');
    send(ws, ERROR, JSON.stringify(exitStatus(code, command)));
  } catch (err) {
    send(ws, ERROR, JSON.stringify(failureStatus(`cannot exec in the container: ${(err as Error).message}`)));
  }
  ws.close(1000);
  void gone;
}

/**
 * attach: the container's output is what the runtime captures, in its log file; it is followed
 * from now on (as `attach` shows new output). A container started with `stdin: true` gets the
 * client's input on its stdin pipe, one with `tty: true` on its terminal, with resizes (the
 * runtime's `AttachIO`); leaving ends the session only (with `stdinOnce` the runtime then
 * closes the container's stdin). A container without stdin takes no input: said once.
 */
export async function serveAttach(ws: WebSocket, t: ExecTarget, o: StreamOptions, running: () => boolean): Promise<void> {
  const io = o.stdin ? t.attach : undefined;
  // input waits until the log's end is known: what it makes the container print is after it
  let held: Buffer[] | undefined = [];
  readChannels(ws, {
    stdin: (b) => (held ? held.push(b) : io?.write(b)),
    // the client's stdin ended (v5): as a session's end, it closes a stdinOnce container's stdin
    stdinEnd: () => io?.detached(),
    resize: (r) => t.attach?.resize(r.width, r.height),
  });
  if (o.stdin && !t.attach) send(ws, o.tty ? STDOUT : STDERR, 'kubeloop: this container was not started with stdin: true, so it takes no input (kubectl exec -it gives a shell)\n');
  const from = (await stat(t.logFile).catch(() => undefined))?.size ?? 0;
  const tail = spawn('tail', ['-c', `+${from + 1}`, '-F', t.logFile], { stdio: ['ignore', 'pipe', 'ignore'] });
  for (const b of held) io?.write(b);
  held = undefined;
  const out = new Outbox(ws);
  tail.stdout.on('data', (b: Buffer) => out.send(STDOUT, b, tail.stdout));
  const check = setInterval(() => {
    if (running()) return;
    clearInterval(check);
    setTimeout(() => {
      send(ws, ERROR, JSON.stringify(exitStatus(0, [])));
      ws.close(1000);
    }, 300);
  }, 250);
  await new Promise<void>((resolve) => ws.once('close', () => resolve()));
  clearInterval(check);
  tail.kill('SIGKILL');
  if (io) io.detached();
}
