import { constants, fchmodSync, openSync } from 'node:fs';
import pino, { type DestinationStream, type Logger } from 'pino';

export interface CliLogger {
  log: Logger;
  /**
   * From now on, log lines go to `file` (appended; made 0600 whatever the umask or its old
   * mode; a symlink is refused) instead of the terminal. Used after `up` printed its table, so later events do not
   * push the table off the screen.
   */
  divert(file: string): void;
}

/**
 * Structured JSON logs on stderr; human-readable only when stderr is a terminal (pino-pretty is
 * loaded only then). Writes are synchronous so nothing is lost when the daemon exits on a signal.
 */
export async function createLogger(level: string, tty: boolean): Promise<CliLogger> {
  let sink: DestinationStream;
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
      // never through a symlink someone left in the state dir
      const next = openSync(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
      fchmodSync(next, 0o600);
      sink = pretty ? prettyTo(next, false) : pino.destination({ dest: next, sync: true });
    },
  };
}
