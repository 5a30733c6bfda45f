/**
 * The v2 table's direct answers to a request: `registered`, `error` (bounded by
 * `ERROR_REPLY_FACTOR`, so errors never amplify) and the log events of sessions and members.
 * Apart because every other module of the table answers through them.
 */
import type { ErrorCode } from '../errors.js';
import { type Endpoint, encodeV2, truncateUtf8 } from '../protocol/index.js';
import { countRejection } from './counters.js';
import type { MemberLifecycleEvent, SessionLifecycleEvent } from './lifecycle.js';
import { type Member, type Session, wireEndpoint } from './v2-session-records.js';
import type { V2Table } from './v2-session-table.js';
import { KEEPALIVES_PER_SILENCE } from './v2-session-timing.js';

/**
 * An `error` reply is at most this many times the size of the datagram it answers (its
 * message is cut to fit; the code always goes). Errors answer unauthenticated input, so
 * they must not make the server an amplifier. QUIC's limit for unvalidated addresses.
 */
export const ERROR_REPLY_FACTOR = 3;
/** Header (9) and the two length bytes of an `error`. */
const ERROR_FIXED_BYTES = 11;
/**
 * Header (9), token (16), the address length and port, and the revision-1 keepalive (2) of a
 * `registered`.
 */
const REGISTERED_FIXED_BYTES = 30;

export function lifecycleEvent(
  t: V2Table,
  type: SessionLifecycleEvent['type'],
  session: Session,
  reason?: string,
): void {
  t.onLifecycle?.({
    type,
    protocol: 'v2',
    key: session.name,
    maxPlayers: session.maxPlayers,
    members: session.members.length,
    reason,
  });
}

export function memberEvent(
  t: V2Table,
  type: MemberLifecycleEvent['type'],
  session: string,
  name: string | undefined,
  reason: string | undefined,
  at: Endpoint,
): void {
  t.onMember?.({
    type,
    protocol: 'v2',
    key: session,
    name,
    reason,
    address: at.address,
    port: at.port,
  });
}

/**
 * A `registered` answer to an unvalidated source must stay within `ERROR_REPLY_FACTOR` ×
 * the request: a short `host`/`join` from a long (IPv6) source is refused with
 * `bad_request` instead; clients pad both to `MIN_REGISTER_REQUEST_BYTES`.
 */
export function registeredFits(t: V2Table, from: Endpoint, requestId: number): boolean {
  const reply = REGISTERED_FIXED_BYTES + wireEndpoint(from).address.length;
  if (reply <= ERROR_REPLY_FACTOR * t.requestBytes) return true;
  refuse(t, from, requestId, 'bad_request', 'Pad host/join to 64 bytes (protocol-v2.md §2).');
  return false;
}

export function registered(
  t: V2Table,
  to: Endpoint,
  requestId: number,
  session: Session,
  member: Member,
): void {
  sendRegistered(t, to, requestId, session, member, member.token);
}

/** `registered` with `token`; a revision ≥ 1 member also learns how often to keepalive. */
export function sendRegistered(
  t: V2Table,
  to: Endpoint,
  requestId: number,
  session: Session,
  member: Member,
  token: Uint8Array,
): void {
  const observed = wireEndpoint(to);
  const keepalive =
    member.revision >= 1
      ? { keepaliveMs: Math.round(session.silenceMs / KEEPALIVES_PER_SILENCE) }
      : {};
  send(t, to, encodeV2({ type: 'registered', requestId, token, observed, ...keepalive }));
}

export function refuse(
  t: V2Table,
  to: Endpoint,
  requestId: number,
  code: ErrorCode,
  message: string,
): void {
  countRejection(t.counters, `v2_${code}`);
  const asking = t.registering;
  if (asking !== undefined) memberEvent(t, 'refused', asking.session, asking.name, code, to);
  replyError(t, to, requestId, code, message);
}

/** The message is cut so that the reply is at most `ERROR_REPLY_FACTOR` × the request. */
export function replyError(
  t: V2Table,
  to: Endpoint,
  requestId: number,
  code: ErrorCode,
  message: string,
): void {
  const room = ERROR_REPLY_FACTOR * t.requestBytes - ERROR_FIXED_BYTES - code.length;
  // Not even the code fits (a bare 9-byte header): no answer, not an amplified one.
  if (room < 0) {
    countRejection(t.counters, 'v2_reply_ratio');
    return;
  }
  if (t.limits !== undefined && !t.limits.allowError(t.now, to.address)) {
    countRejection(t.counters, 'v2_error_budget');
    return;
  }
  const cut = truncateUtf8(message, Math.max(0, room));
  send(t, to, encodeV2({ type: 'error', requestId, code, message: cut }));
}

export function send(t: V2Table, to: Endpoint, data: Uint8Array): void {
  t.outbox.send(to, data);
}
