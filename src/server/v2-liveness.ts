/**
 * The v2 table's timers: session expiry and linger, members that never validated or fell
 * silent, `peers` re-pushes and the report of members that never acked them. Run by
 * `handleTimeout` from the heap of per-session wakeups.
 */
import { countRejection } from './counters.js';
import { endSession, memberGone, removeMember } from './v2-endings.js';
import { peerLeft, pushLobby, sendPeers } from './v2-pushes.js';
import { hasAcked, isOpen, type Session } from './v2-session-records.js';
import { schedule, type V2Table } from './v2-session-table.js';
import {
  PEERS_ACK_WITHIN_MS,
  PEERS_MAX_TRIES,
  PEERS_RETRY_FIRST_MS,
  VALIDATE_WITHIN_MS,
} from './v2-session-timing.js';
import { heapPop } from './v2-timer-heap.js';

export function nextDeadline(t: V2Table): number {
  const sessions = t.timers[0]?.at ?? Number.POSITIVE_INFINITY;
  const asks = t.started.values().next().value?.until ?? Number.POSITIVE_INFINITY;
  return Math.min(sessions, asks, t.relay?.nextDeadline() ?? Number.POSITIVE_INFINITY);
}

export function handleTimeout(t: V2Table, now: number): void {
  t.relay?.handleTimeout(now);
  for (const [token, { until }] of t.started) {
    if (until > now) break;
    t.started.delete(token);
  }
  // Bounded by the heap size: every pop removes an entry, re-scheduling adds later ones.
  for (let top = t.timers[0]; top !== undefined && top.at <= now; top = t.timers[0]) {
    heapPop(t.timers);
    const session = top.session;
    if (session.gone || top.at !== session.timerAt) continue;
    session.timerAt = Number.POSITIVE_INFINITY;
    wake(t, now, session);
  }
}

export function wake(t: V2Table, now: number, session: Session): void {
  if (now >= session.deadline) {
    if (session.state === 'waiting') endSession(t, now, session, 'expired', 'Session expired.');
    else endSession(t, now, session, 'linger_over');
    return;
  }
  let next = session.deadline;
  if (session.state === 'waiting' || isOpen(session)) {
    const at = checkLiveness(t, now, session);
    if (session.gone) return;
    next = Math.min(next, at);
  }
  if (session.state === 'started') {
    for (const m of session.members) {
      if (!m.validated || m.ackedVersion > 0 || m.reportedSilent) continue;
      // Counted from when it could first have had a list: the start, or its late join.
      const reportAt = Math.max(session.startedAt, m.joinedAt) + PEERS_ACK_WITHIN_MS;
      if (now < reportAt) {
        next = Math.min(next, reportAt);
        continue;
      }
      m.reportedSilent = true;
      countRejection(t.counters, 'v2_silent_member');
      peerLeft(t, session, m, 'silent');
    }
    for (const m of session.members) {
      if (!m.validated || hasAcked(session, m) || m.peersTries >= PEERS_MAX_TRIES) continue;
      if (now >= m.peersNextAt) {
        sendPeers(t, now, session, m, 0);
        m.peersNextAt = now + PEERS_RETRY_FIRST_MS * 2 ** m.peersTries;
        m.peersTries++;
      }
      if (m.peersTries < PEERS_MAX_TRIES) next = Math.min(next, m.peersNextAt);
    }
  }
  schedule(t, session, next);
}

/**
 * A waiting or open session drops members that never validated and validated ones silent
 * for its `silenceMs`; a silent host ends it (`closed host_left`). Returns when to look again.
 */
export function checkLiveness(t: V2Table, now: number, session: Session): number {
  const open = session.state === 'started';
  const stale = session.members.filter(
    (m) => !m.validated && now >= m.joinedAt + VALIDATE_WITHIN_MS,
  );
  if (stale.some((m) => m.isHost)) {
    countRejection(t.counters, 'v2_unvalidated_member');
    endSession(t, now, session, 'host_unvalidated', 'The host did not confirm its address.');
    return Number.POSITIVE_INFINITY;
  }
  for (const m of stale) {
    countRejection(t.counters, 'v2_unvalidated_member');
    removeMember(t, session, m);
  }
  const silent = session.members.filter(
    (m) => m.validated && now >= m.lastSeenAt + session.silenceMs,
  );
  const host = silent.find((m) => m.isHost);
  if (host !== undefined) {
    countRejection(t.counters, 'v2_silent_member');
    endSession(
      t,
      now,
      session,
      open ? 'host_silent_open' : 'host_silent',
      `The host left: nothing from it for ${session.silenceMs / 1000} s.`,
      host,
    );
    return Number.POSITIVE_INFINITY;
  }
  for (const m of silent) {
    countRejection(t.counters, 'v2_silent_member');
    memberGone(t, now, session, m, 'silent');
  }
  if (session.lobbyPushDue) pushLobby(t, session);
  let next = Number.POSITIVE_INFINITY;
  for (const m of session.members) {
    next = Math.min(
      next,
      m.validated ? m.lastSeenAt + session.silenceMs : m.joinedAt + VALIDATE_WITHIN_MS,
    );
  }
  return next;
}
