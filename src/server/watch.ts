/**
 * Watch streams: `200`, chunked, one `{"type":…,"object":…}` JSON line per event, flushed as it
 * happens. From a resourceVersion the store replays what followed it; too old ⇒ one `ERROR`
 * event carrying a 410 `Expired` Status, then the end (clients relist). Without a
 * resourceVersion (or "0") the current objects come first as `ADDED`. Bookmarks on request,
 * `timeoutSeconds` honoured, the store watch stopped when the client goes away.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import type { KObject } from '../api/types.js';
import type { Watch, WatchEvent } from '../store/types.js';
import { toStatus } from './status.js';
import { type IncludeObject, toTable } from './table.js';

export interface WatchSource {
  kind: string;
  apiVersion: string;
  list(): Promise<{ items: KObject[]; resourceVersion: string }>;
  /** throws Expired (410) when `resourceVersion` is older than the history */
  watch(resourceVersion: string | undefined, onEvent: (ev: WatchEvent) => void): Watch;
  currentResourceVersion(): string;
}

export interface WatchOptions {
  resourceVersion?: string;
  timeoutSeconds?: number;
  allowBookmarks: boolean;
  sendInitialEvents: boolean;
  table?: { version: string; includeObject: IncludeObject };
  /** transform an object before it is sent (e.g. pod → Table row) */
  bookmarkIntervalMs?: number;
  log: Logger;
}

/**
 * The JSON of each stored object, made once however many watchers send it (apiserver's
 * `cachingObject`): the store hands every watcher the same deep-frozen object, so its text
 * cannot change and is keyed on the object itself, dropped with it. Objects that are not frozen
 * (built per request) are encoded each time.
 */
const encoded = new WeakMap<object, string>();

export function encodeObject(obj: unknown): string {
  if (obj === null || typeof obj !== 'object' || !Object.isFrozen(obj)) return JSON.stringify(obj);
  let text = encoded.get(obj);
  if (text === undefined) {
    text = JSON.stringify(obj);
    encoded.set(obj, text);
  }
  return text;
}

/** One watch line, byte for byte `JSON.stringify({ type, object })` + newline. */
export const watchLine = (type: string, object: unknown): string => `{"type":${JSON.stringify(type)},"object":${encodeObject(object)}}\n`;

export async function serveWatch(req: IncomingMessage, res: ServerResponse, src: WatchSource, o: WatchOptions): Promise<void> {
  let first = true;
  let closed = false;
  let watch: Watch | undefined;
  const timers: NodeJS.Timeout[] = [];
  const finish = () => {
    if (closed) return;
    closed = true;
    watch?.stop();
    for (const t of timers) clearTimeout(t);
    if (!res.writableEnded) res.end();
  };
  req.on('close', finish);
  res.on('close', finish);

  const contentType = o.table ? `application/json;as=Table;v=${o.table.version};g=meta.k8s.io` : 'application/json';
  res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
  res.flushHeaders();

  const send = (type: string, object: unknown) => {
    if (closed) return;
    res.write(watchLine(type, object));
  };
  const sendObject = (type: string, obj: KObject) => {
    if (o.table && type !== 'BOOKMARK' && type !== 'ERROR') {
      const t = toTable(src.kind, [obj], { includeObject: o.table.includeObject, noHeaders: !first, version: o.table.version }, { resourceVersion: obj.metadata?.resourceVersion ?? '' });
      first = false;
      send(type, t);
    } else {
      send(type, obj);
    }
  };
  const bookmark = (rv: string, initialEnd = false) =>
    send('BOOKMARK', {
      kind: src.kind,
      apiVersion: src.apiVersion,
      metadata: { resourceVersion: rv, ...(initialEnd ? { annotations: { 'k8s.io/initial-events-end': 'true' } } : {}) },
    });

  let from = o.resourceVersion;
  const initial = o.sendInitialEvents || from === undefined || from === '' || from === '0';
  try {
    if (initial) {
      const { items, resourceVersion } = await src.list();
      for (const it of items) sendObject('ADDED', it);
      from = resourceVersion;
      if (o.sendInitialEvents && o.allowBookmarks) bookmark(resourceVersion, true);
    }
    if (closed) return;
    watch = src.watch(from, (ev) => sendObject(ev.type, ev.object));
  } catch (err) {
    if (isApiError(err, 'Expired') || isApiError(err, 'Gone')) {
      send('ERROR', toStatus(err));
      finish();
      return;
    }
    o.log.warn({ err }, 'watch failed');
    send('ERROR', toStatus(err));
    finish();
    return;
  }
  if (o.timeoutSeconds !== undefined && o.timeoutSeconds > 0) {
    timers.push(setTimeout(finish, o.timeoutSeconds * 1000));
  }
  if (o.allowBookmarks) {
    const every = o.bookmarkIntervalMs ?? 60_000;
    const tick = () => {
      if (closed) return;
      bookmark(src.currentResourceVersion());
      timers.push(setTimeout(tick, every));
    };
    timers.push(setTimeout(tick, every));
  }
}
