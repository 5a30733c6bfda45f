/**
 * How a v2 session ends or leaves the table (`V2_SESSION_ENDINGS`), how it starts, and how a
 * member goes: the one place that releases what sessions and members were charged.
 */
import { encodePushBody, sealPush } from '../protocol/index.js';
import {
  V2_SESSION_ENDINGS,
  type V2SessionEnding,
  type V2SessionEndingRow,
} from './v2-lifecycle.js';
import { lobbyChanged, peerLeft, pushPeers } from './v2-pushes.js';
import { lifecycleEvent, memberEvent, send } from './v2-replies.js';
import { hasAcked, isOpen, type Member, type Session } from './v2-session-records.js';
import type { V2Table } from './v2-session-table.js';
import { STARTED_LINGER_MS, STARTED_NAME_MEMORY_MS } from './v2-session-timing.js';

/**
 * The one way a session ends or leaves the table (`V2_SESSION_ENDINGS`): a waiting session
 * counts its ending's counter and emits its event, once; a started one only goes. Then it
 * starts (`peers`), or every validated member except `except` is told `closed` with
 * `reason` (its relay allocations close) and it is forgotten.
 */
export function endSession(
  t: V2Table,
  now: number,
  session: Session,
  ending: V2SessionEnding,
  reason = '',
  except?: Member,
): void {
  const row: V2SessionEndingRow = V2_SESSION_ENDINGS[ending];
  if (session.gone) return;
  if (session.state !== row.from) {
    throw new Error(`v2 session ending ${ending} from state ${session.state}`);
  }
  // Members that never showed they receive at their address are not exchanged (nor counted
  // in the `started` event).
  if (row.told === 'peers') {
    for (const m of session.members.filter((x) => !x.validated)) removeMember(t, session, m);
  }
  if (row.counter !== null) {
    t.counters[row.counter]++;
    lifecycleEvent(t, row.state, session, row.told === 'peers' ? ending : reason);
  }
  if (row.told === 'peers') {
    startSession(t, now, session);
    return;
  }
  if (row.told !== null) {
    t.relay?.closeSession(session.instance);
    const body = encodePushBody({ type: 'closed', requestId: 0, code: row.told, reason });
    // A code added by a revision goes only to members of that revision: an older decoder
    // refuses an unknown code (the whole datagram), so they hear what they always heard.
    const older =
      row.told === 'server_shutdown'
        ? encodePushBody({ type: 'closed', requestId: 0, code: 'session_closed', reason })
        : body;
    for (const m of session.members) {
      if (m.validated && m !== except)
        send(t, m.endpoint, sealPush(m.token, m.revision >= 1 ? body : older));
    }
  }
  forgetSession(t, session);
}

/** Moves a waiting session (counted and reported by `#end`) to started and sends peers. */
export function startSession(t: V2Table, now: number, session: Session): void {
  const members = session.members.slice();
  session.state = 'started';
  t.startedOpen++;
  session.startedAt = now;
  rememberStarted(t, now, session);
  session.deadline = now + (session.keepOpenMs > 0 ? session.keepOpenMs : STARTED_LINGER_MS);
  pushPeers(t, now, session, members);
}

/**
 * A member of a started session is gone (`leave`, silence, or replaced by its rejoin):
 * the others stop punching it and its relay allocations close. An open session's peer
 * list changes with it; a closed one may now be forgotten.
 */
export function memberGone(
  t: V2Table,
  now: number,
  session: Session,
  member: Member,
  why: 'left' | 'silent' | 'rejoined',
): void {
  removeMember(t, session, member);
  if (member.validated) memberEvent(t, 'left', session.name, member.name, why, member.endpoint);
  if (session.state === 'waiting') {
    if (member.validated) lobbyChanged(t, now, session);
    return;
  }
  if (!member.validated) return;
  // The others may be punching it: tell them it is gone, not behind a NAT. A rejoining
  // member is not gone: the new peer list moves it.
  if (why !== 'rejoined') peerLeft(t, session, member, why);
  t.relay?.closeMember(session.instance, member.name);
  if (isOpen(session)) {
    if (why === 'rejoined') return;
    session.peersVersion++;
  }
  forgetIfAllAcked(t, now, session);
}

export function forgetIfAllAcked(t: V2Table, now: number, session: Session): void {
  // An open session stays for late joiners until its keepOpen ends or the host closes it.
  if (session.keepOpenMs > 0) return;
  if (session.members.every((m) => hasAcked(session, m))) endSession(t, now, session, 'all_acked');
}

export function rememberStarted(t: V2Table, now: number, session: Session): void {
  const name = session.name;
  // Expired names go first: the map holds at most the names started within the window.
  for (const [old, { until }] of t.recentlyStarted) {
    if (until > now) break;
    t.recentlyStarted.delete(old);
  }
  t.recentlyStarted.delete(name);
  const addresses = new Set(session.members.map((m) => m.endpoint.address));
  t.recentlyStarted.set(name, { until: now + STARTED_NAME_MEMORY_MS, addresses });
}

export function forgetSession(t: V2Table, session: Session): void {
  if (session.gone) return;
  session.gone = true;
  if (t.sessions.get(session.name) === session) {
    t.sessions.delete(session.name);
    if (session.state === 'started') t.startedOpen--;
    t.membersOpen -= session.members.length;
  }
  const limits = t.limits;
  if (limits === undefined) return;
  limits.budget.release(session.bytes);
  limits.closeV2Session(session.source);
  for (const m of session.members) {
    limits.budget.release(m.bytes);
    limits.removeV2Member(m.source);
  }
}

/** Takes `member` out of a live session and releases what it was charged. */
export function removeMember(t: V2Table, session: Session, member: Member): void {
  const i = session.members.indexOf(member);
  if (i === -1) return;
  session.members.splice(i, 1);
  if (!session.gone) t.membersOpen--;
  t.limits?.budget.release(member.bytes);
  t.limits?.removeV2Member(member.source);
}
