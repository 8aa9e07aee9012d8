/**
 * The API's request handling as one chain of filters, outermost first (as the apiserver's
 * DefaultBuildHandlerChain): panic recovery, body limits, authentication (auth.ts checks),
 * then the handler. A filter either answers the request itself or calls `next`; each is a
 * plain function, testable alone with a request and a response.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { discardBody, sendError, sendStatus, tooLarge } from './http.js';
import { type StatusBody, failure } from './status.js';

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  /** the request target's path exactly as sent: not decoded, not normalised (route.ts decodes it) */
  target: string;
  query: URLSearchParams;
}

export type Handler = (c: RequestContext) => Promise<void>;
export type Filter = (c: RequestContext, next: Handler) => Promise<void>;

/** `filters[0]` runs first and decides whether `filters[1]` (… and finally `handler`) runs. */
export function chain(filters: readonly Filter[], handler: Handler): Handler {
  return filters.reduceRight<Handler>((next, f) => (c) => f(c, next), handler);
}

/** The context of a request; never throws (a bad target is the router's 400, inside the chain). */
export function requestContext(req: IncomingMessage, res: ServerResponse): RequestContext {
  const raw = req.url ?? '/';
  const q = raw.indexOf('?');
  const target = q >= 0 ? raw.slice(0, q) : raw;
  // URLSearchParams never throws: a malformed escape in the query stays as sent
  const query = new URLSearchParams(q >= 0 ? raw.slice(q + 1).split('#')[0] : '');
  return { req, res, target, query };
}

/**
 * Outermost: whatever the rest of the chain throws becomes a Status (an ApiError keeps its
 * code, anything else is a logged 500), so no request can take the daemon down or leave a
 * client hanging; a reply that had already started is cut short.
 */
export function recoverPanics(log: Logger): Filter {
  return async (c, next) => {
    try {
      await next(c);
    } catch (err) {
      if (c.res.headersSent) {
        log.debug({ err, method: c.req.method, path: c.target }, 'request failed after the reply started');
        c.res.end();
        return;
      }
      const st = sendError(c.res, err);
      if (st.code >= 500) log.error({ err, method: c.req.method, path: c.target }, 'request failed');
      else log.trace({ code: st.code, reason: st.reason, method: c.req.method, path: c.target }, st.message ?? '');
    }
  };
}

/** A check in auth.ts's style (the Status a request is refused with, or undefined) as a filter. */
export function refuseWith(check: (c: RequestContext) => StatusBody | undefined, log: Logger): Filter {
  return async (c, next) => {
    const refused = check(c);
    if (!refused) return next(c);
    log.debug({ method: c.req.method, path: c.target, code: refused.code, remote: c.req.socket.remoteAddress }, refused.message ?? '');
    // a refused client does not keep its connection: it would otherwise hold an API slot on
    // keep-alive for as long as it keeps asking. A body still on its way is drained first
    // (discardBody), so the answer is not lost to a reset; the socket is then ended.
    c.res.shouldKeepAlive = false;
    const bodyComing = !c.req.complete && (Number(c.req.headers['content-length'] ?? 0) > 0 || c.req.headers['transfer-encoding'] !== undefined);
    if (bodyComing) discardBody(c.req, c.res);
    sendStatus(c.res, refused, bodyComing ? {} : { Connection: 'close' });
  };
}

/**
 * A request whose declared Content-Length is over `limit` is answered 413 at once, before a
 * byte of it is read; bodies without a length are held to the limit by http.ts readBody.
 */
export function bodyLimit(limit: number): Filter {
  return async (c, next) => {
    const declared = Number(c.req.headers['content-length'] ?? 0);
    if (!(declared > limit)) return next(c);
    const err = tooLarge(limit);
    discardBody(c.req, c.res);
    sendStatus(c.res, failure(err.reason, err.message, err.code));
  };
}
