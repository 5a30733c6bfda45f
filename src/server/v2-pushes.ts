/**
 * What the v2 table pushes unasked: the lobby to its members, the peer list (split over
 * datagrams, re-pushed until acked) and `peer_left`. Apart from the endings, which start a
 * session by pushing its peers.
 */
import {
  bytesKey,
  encodePushBody,
  encodeV2Peers,
  MAX_DATAGRAM_BYTES,
  PEERS_FIXED_BYTES,
  type PeerLeftWhy,
  sealPush,
} from '../protocol/index.js';
import { send } from './v2-replies.js';
import {
  isOpen,
  type Member,
  peerEntry,
  type Session,
  wireEndpoint,
} from './v2-session-records.js';
import { schedule, type V2Table } from './v2-session-table.js';
import { PEERS_RETRY_FIRST_MS, RELAY_ASK_WINDOW_MS } from './v2-session-timing.js';

/** The lobby without its tag: `sealPush` tags it for each member with that member's token. */
export function lobbyBody(session: Session, requestId: number): Uint8Array {
  const nicknames: string[] = [];
  for (const m of session.members) if (m.validated) nicknames.push(m.nickname);
  return encodePushBody({
    type: 'lobby',
    requestId,
    version: session.lobbyVersion,
    maxPlayers: session.maxPlayers,
    nicknames,
  });
}

/**
 * The membership changed. The members are told by a timer due now, which the driver runs
 * once it has handled the datagrams that arrived with this one: a lobby that fills in a
 * burst costs a push per member per burst, not one per member per arrival (32 players:
 * 32 pushes, not 496).
 */
export function lobbyChanged(t: V2Table, now: number, session: Session): void {
  session.lobbyVersion++;
  if (session.lobbyPushDue) return;
  session.lobbyPushDue = true;
  schedule(t, session, now);
}

/** Pushes the lobby to every validated member that has not had this version. */
export function pushLobby(t: V2Table, session: Session): void {
  session.lobbyPushDue = false;
  let body: Uint8Array | undefined;
  for (const m of session.members) {
    if (!m.validated || m.lobbySent === session.lobbyVersion) continue;
    body ??= lobbyBody(session, 0);
    m.lobbySent = session.lobbyVersion;
    send(t, m.endpoint, sealPush(m.token, body));
  }
}

/** Tells the other validated members of a started session that `gone` is gone. */
export function peerLeft(t: V2Table, session: Session, gone: Member, why: PeerLeftWhy): void {
  const body = encodePushBody({ type: 'peer_left', requestId: 0, name: gone.name, why });
  for (const m of session.members) {
    if (m.validated && m !== gone) send(t, m.endpoint, sealPush(m.token, body));
  }
}

/**
 * A new peer list (version): each validated member gets it, re-pushed until acked, and may
 * ask the relay towards anyone on it for `RELAY_ASK_WINDOW_MS` from now.
 */
export function pushPeers(
  t: V2Table,
  now: number,
  session: Session,
  members: readonly Member[],
): void {
  session.peersVersion++;
  if (t.relay !== undefined) {
    const until = now + RELAY_ASK_WINDOW_MS;
    for (const member of members) {
      // Re-inserted, so that the map stays in expiry order.
      const key = bytesKey(member.token);
      t.started.delete(key);
      t.started.set(key, { session, member, until });
    }
  }
  for (const m of members) {
    m.peersTries = 1;
    m.peersNextAt = now + PEERS_RETRY_FIRST_MS;
    sendPeers(t, now, session, m, 0);
  }
  schedule(t, session, now + PEERS_RETRY_FIRST_MS);
}

/** An open session's membership changed after the start: everyone present gets the new list. */
export function peersChanged(t: V2Table, now: number, session: Session): void {
  pushPeers(
    t,
    now,
    session,
    session.members.filter((m) => m.validated),
  );
}

/** Sends `member` every other validated member, split over as many datagrams as needed. */
export function sendPeers(
  t: V2Table,
  now: number,
  session: Session,
  member: Member,
  requestId: number,
): void {
  const entries: Uint8Array[] = [];
  for (const m of session.members) if (m !== member && m.validated) entries.push(peerEntry(m));
  const head = {
    requestId,
    punchKey: session.punchKey,
    token: member.token,
    observed: wireEndpoint(member.endpoint),
    total: entries.length,
    ...(member.revision >= 1
      ? {
          version: session.peersVersion,
          openS: isOpen(session) ? Math.max(0, Math.ceil((session.deadline - now) / 1000)) : 0,
        }
      : {}),
  };
  let first = 0;
  let size = PEERS_FIXED_BYTES;
  const flush = (end: number): void => {
    send(t, member.endpoint, encodeV2Peers({ ...head, first }, entries.slice(first, end)));
    first = end;
    size = PEERS_FIXED_BYTES;
  };
  for (const [i, entry] of entries.entries()) {
    if (i > first && size + entry.length > MAX_DATAGRAM_BYTES) flush(i);
    size += entry.length;
  }
  flush(entries.length);
}
