import { closeSync, fchmodSync, openSync } from 'node:fs';
import pino, { type DestinationStream, type Logger } from 'pino';

export interface CliLogger {
  log: Logger;
  /**
   * From now on, log lines go to `file` (appended; made 0600 whatever the umask or its old
   * mode) instead of the terminal. Used after `up` printed its table, so later events do not
   * push the table off the screen.
   */
  divert(file: string): void;
  /** closes a diverted file (lines written so far are on disk: writes are synchronous) */
  close(): void;
}

/**
 * Structured JSON logs on stderr; human-readable only when stderr is a terminal (pino-pretty is
 * loaded only then). Writes are synchronous so nothing is lost when the daemon exits on a signal.
 */
export async function createLogger(level: string, tty: boolean): Promise<CliLogger> {
  let sink: DestinationStream;
  let fd: number | undefined;
  const pretty = tty ? (await import('pino-pretty')).default : undefined;
  const prettyTo = (destination: number, colorize: boolean): DestinationStream =>
    pretty!({ destination, sync: true, colorize, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' });
  sink = pretty ? prettyTo(2, true) : pino.destination({ dest: 2, sync: true });
  // one stream whose target can change: pino keeps the stream it was given
  const switchable: DestinationStream = { write: (line: string) => void sink.write(line) };
  const log = pino(pretty ? { level } : { level, base: undefined }, switchable);
  return {
    log,
    divert(file) {
      const next = openSync(file, 'a', 0o600);
      fchmodSync(next, 0o600);
      sink = pretty ? prettyTo(next, false) : pino.destination({ dest: next, sync: true });
      fd = next;
    },
    close() {
      if (fd === undefined) return;
      sink = pino.destination({ dest: 2, sync: true });
      closeSync(fd);
      fd = undefined;
    },
  };
}
