/**
 * What the traversal does when the server answers one of its requests with an `error`: the
 * error policy as a table of cases (h11's `_state.py` habit), apart from the state machine
 * that carries it out, so it can be read (and compared with the GDScript addon's) as one
 * thing. Pure: the request's kind, the server's code and three facts about the traversal in,
 * one decision out; the words are in messages.ts.
 */
import type { HolePunchError } from '../errors.js';
import type { RequestKind } from './requests.js';

type Code = HolePunchError['code'];

/** What to do about one server `error`. */
export type ErrorDecision =
  /** A relay allocation refused: the punch goes on, and this is the peer's cause if missed. */
  | { readonly type: 'relayRefused' }
  /** A goodbye answered (`ok`: the server had already let us go). */
  | { readonly type: 'goodbye'; readonly ok: boolean }
  /** The session is not there (yet): its host may start later, ask again soon. */
  | { readonly type: 'waitForHost' }
  /** An open session behind a game already playing ended: the game goes on. */
  | { readonly type: 'sessionEnded' }
  /**
   * The traversal fails with `code`, saying `say`: the server's own words (`server`), or a
   * message of ours about the session (messages.ts).
   */
  | {
      readonly type: 'fail';
      readonly code: Code;
      readonly say: 'server' | 'noSession' | 'sessionFull' | 'sessionGone';
    };

export interface ErrorContext {
  readonly isHost: boolean;
  /** The traversal already succeeded (`punched`): only an open session's keepalives remain. */
  readonly punched: boolean;
  /** A joiner's `SESSION_WAIT_MS` is not over yet. */
  readonly mayWait: boolean;
}

/** Our token does not open the session (any more): it ended while we were in it. */
const gone = (code: Code) => code === 'not_authorized' || code === 'session_not_found';

export function decideOnError(kind: RequestKind, code: Code, c: ErrorContext): ErrorDecision {
  if (kind === 'relay') return { type: 'relayRefused' };
  // Already gone (e.g. our first try got through and only its `ok` was lost).
  if (kind === 'leave' || kind === 'close') return { type: 'goodbye', ok: gone(code) };
  const joining = kind === 'register' && !c.isHost;
  if (joining && code === 'session_not_found' && c.mayWait) return { type: 'waitForHost' };
  // The open session ended (its keepOpen ran out, or it was closed).
  if (kind === 'keepalive' && c.punched) return { type: 'sessionEnded' };
  if (joining && code === 'session_not_found') return { type: 'fail', code, say: 'noSession' };
  if (joining && code === 'session_full') return { type: 'fail', code, say: 'sessionFull' };
  if (kind === 'keepalive' && gone(code)) {
    return { type: 'fail', code: 'session_closed', say: 'sessionGone' };
  }
  if (kind === 'start' && code === 'not_authorized') {
    return { type: 'fail', code: 'session_closed', say: 'sessionGone' };
  }
  return { type: 'fail', code, say: 'server' };
}
