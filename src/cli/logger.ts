import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

/**
 * Structured JSON logs on stderr; human-readable only when stderr is a terminal. Writes are
 * synchronous so nothing is lost when the daemon exits on a signal.
 */
export function createLogger(level: string, tty: boolean): Logger {
  if (tty) {
    return pino(
      { level },
      pretty({ destination: 2, sync: true, colorize: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' }),
    );
  }
  return pino({ level, base: undefined }, pino.destination({ dest: 2, sync: true }));
}
