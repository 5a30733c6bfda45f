/**
 * `host` and `join` of the v2 table: validation of what they ask (identity, candidates,
 * limits, memory budget), rejoins of open sessions, and the validation of a member's address
 * that lets it into the lobby. Apart because it is the table's whole defence against forged
 * and oversized registrations.
 */
import {
  type Endpoint,
  isUnicastEndpoint,
  isValidField,
  MAX_NAME_BYTES,
  MAX_NICKNAME_BYTES,
  MAX_SESSION_BYTES,
  MAX_SILENCE_S,
  MIN_PLAYERS,
  MIN_SILENCE_S,
  PUNCH_KEY_BYTES,
  sameEndpoint,
  TOKEN_BYTES,
  unmappedAddress,
  type V2Message,
} from '../protocol/index.js';
import { countRejection } from './counters.js';
import { MEMORY_COSTS, type SourceLimits, sourceKey } from './source-limits.js';
import { endSession, memberGone, removeMember } from './v2-endings.js';
import { lobbyChanged, peersChanged, pushLobby } from './v2-pushes.js';
import {
  lifecycleEvent,
  memberEvent,
  refuse,
  registered,
  registeredFits,
  replyError,
} from './v2-replies.js';
import {
  isOpen,
  type Member,
  memberBytes,
  type Session,
  validatedCount,
} from './v2-session-records.js';
import { schedule, type V2Table } from './v2-session-table.js';
import {
  KEEPALIVES_PER_SILENCE,
  MEMBER_SILENCE_MS,
  VALIDATE_WITHIN_MS,
} from './v2-session-timing.js';

/** While the server drains, every `host`/`join` is refused (`server_full`, a clear message). */
export function refuseDraining(t: V2Table, from: Endpoint, requestId: number): boolean {
  if (!t.draining) return false;
  countRejection(t.counters, 'v2_draining');
  replyError(t, from, requestId, 'server_full', 'The server is shutting down.');
  return true;
}

/** Refuses a `host`/`join` whose session, name or nickname is empty or too long. */
export function validIdentity(
  t: V2Table,
  from: Endpoint,
  msg: Extract<V2Message, { type: 'host' | 'join' }>,
): boolean {
  if (
    isValidField(msg.session, MAX_SESSION_BYTES) &&
    isValidField(msg.name, MAX_NAME_BYTES) &&
    isValidField(msg.nickname, MAX_NICKNAME_BYTES, true)
  ) {
    return true;
  }
  refuse(t, from, msg.requestId, 'bad_request', 'Session and name must not be empty.');
  return false;
}

/** Refuses a `host`/`join` whose candidates are not all unicast IP literals. */
export function validCandidates(
  t: V2Table,
  from: Endpoint,
  msg: Extract<V2Message, { type: 'host' | 'join' }>,
): boolean {
  if (msg.candidates.every(isUnicastEndpoint)) return true;
  refuse(t, from, msg.requestId, 'bad_request', 'Candidates must be unicast IP addresses.');
  return false;
}

export function registerHost(
  t: V2Table,
  now: number,
  from: Endpoint,
  msg: Extract<V2Message, { type: 'host' }>,
): void {
  if (refuseDraining(t, from, msg.requestId)) return;
  if (!validIdentity(t, from, msg) || !registeredFits(t, from, msg.requestId)) return;
  if (!validCandidates(t, from, msg)) return;
  if (msg.maxPlayers < MIN_PLAYERS || msg.maxPlayers > t.maxPlayersCap) {
    refuse(
      t,
      from,
      msg.requestId,
      'bad_request',
      `maxPlayers must be ${MIN_PLAYERS}..${t.maxPlayersCap}.`,
    );
    return;
  }
  const silenceS = msg.silenceS ?? 0;
  if (silenceS !== 0 && (silenceS < MIN_SILENCE_S || silenceS > MAX_SILENCE_S)) {
    refuse(
      t,
      from,
      msg.requestId,
      'bad_request',
      `silence must be 0 (default) or ${MIN_SILENCE_S}..${MAX_SILENCE_S} s.`,
    );
    return;
  }
  const existing = t.sessions.get(msg.session);
  if (existing !== undefined) {
    const host = existing.members.find((m) => m.isHost);
    // A retransmitted `host` (its reply was lost): same answer, same token.
    if (host !== undefined && host.name === msg.name && sameEndpoint(host.endpoint, from)) {
      registered(t, from, msg.requestId, existing, host);
      return;
    }
    if (existing.state === 'waiting' || isOpen(existing)) {
      refuse(t, from, msg.requestId, 'session_exists', 'Tried to create existing session.');
      return;
    }
    // A started session only lingers for late peer and relay requests: its name is free
    // for the next game (its relay channels live on without it).
    endSession(t, now, existing, 'name_reused');
  }
  if (t.sessions.size >= t.maxSessions) {
    refuse(t, from, msg.requestId, 'server_full', 'The server holds too many sessions.');
    return;
  }
  const source = sourceKey(from.address);
  const sessionBytes = MEMORY_COSTS.v2Session + MEMORY_COSTS.v2TextByte * msg.session.length;
  const hostBytes = memberBytes(msg);
  const admitted = admit(
    t,
    from,
    msg.requestId,
    sessionBytes + hostBytes,
    (limits) => limits.openV2Session(now, source),
    'Too many lobbies from your address.',
  );
  if (!admitted) return;
  const host = newMember(t, now, msg, true, from, source, hostBytes);
  const session: Session = {
    name: msg.session,
    instance: ++t.instances,
    source,
    bytes: sessionBytes,
    maxPlayers: msg.maxPlayers,
    punchKey: t.randomBytes(PUNCH_KEY_BYTES),
    members: [host],
    state: 'waiting',
    startedAt: Number.NaN,
    keepOpenMs: (msg.keepOpenS ?? 0) * 1000,
    silenceMs: silenceS === 0 ? MEMBER_SILENCE_MS : silenceS * 1000,
    peersVersion: 0,
    lobbyVersion: 1,
    lobbyPushDue: false,
    deadline: now + t.ttlMs,
    timerAt: Number.POSITIVE_INFINITY,
    gone: false,
  };
  t.sessions.set(msg.session, session);
  t.membersOpen++;
  // A new game under the name: joiners are for it now.
  t.recentlyStarted.delete(msg.session);
  t.counters.sessionsCreated++;
  lifecycleEvent(t, 'created', session);
  schedule(t, session, Math.min(session.deadline, now + VALIDATE_WITHIN_MS));
  registered(t, from, msg.requestId, session, host);
}

/**
 * Reserves `bytes` of the memory budget, then the source's quota (`take`); on either refusal
 * answers `server_full` (releasing the bytes) and returns false. Always true without limits.
 */
export function admit(
  t: V2Table,
  from: Endpoint,
  requestId: number,
  bytes: number,
  take: (limits: SourceLimits) => boolean,
  quotaMessage: string,
): boolean {
  const limits = t.limits;
  if (limits === undefined) return true;
  if (!limits.budget.reserve(bytes)) {
    refuse(t, from, requestId, 'server_full', 'The server is out of memory for lobbies.');
    return false;
  }
  if (!take(limits)) {
    limits.budget.release(bytes);
    countRejection(t.counters, 'v2_source_quota');
    refuse(t, from, requestId, 'server_full', quotaMessage);
    return false;
  }
  return true;
}

export function registerJoin(
  t: V2Table,
  now: number,
  from: Endpoint,
  msg: Extract<V2Message, { type: 'join' }>,
): void {
  if (refuseDraining(t, from, msg.requestId)) return;
  if (!validIdentity(t, from, msg) || !registeredFits(t, from, msg.requestId)) return;
  const session = t.sessions.get(msg.session);
  if (session === undefined) {
    const started = t.recentlyStarted.get(msg.session);
    // A player of the last game under this name is likely back for the next one, whose
    // host may simply not be there yet: it waits as for any missing host. Anyone else came
    // too late and is told so at once.
    if (started !== undefined && started.until > now && !started.addresses.has(from.address)) {
      refuse(t, from, msg.requestId, 'session_full', 'The session has already started.');
    } else {
      refuse(t, from, msg.requestId, 'session_not_found', 'No such session.');
    }
    return;
  }
  const same = session.members.find((m) => m.name === msg.name);
  if (same !== undefined) {
    if (sameEndpoint(same.endpoint, from)) {
      registered(t, from, msg.requestId, session, same);
      return;
    }
    if (!mayRejoin(now, session, same, from)) {
      refuse(t, from, msg.requestId, 'name_taken', 'Client already registered.');
      return;
    }
  }
  if (session.state === 'started' && !isOpen(session)) {
    refuse(t, from, msg.requestId, 'session_full', 'The session has already started.');
    return;
  }
  // Unvalidated members do not hold slots against validated ones: the lobby is full when
  // maxPlayers members showed their address. Up to maxPlayers more may wait to show theirs;
  // beyond that the one waiting longest makes room (forged joins never validate).
  const validated = validatedCount(session) - (same?.validated ? 1 : 0);
  if (validated >= session.maxPlayers) {
    refuse(t, from, msg.requestId, 'session_full', 'Session full.');
    return;
  }
  // Checked last of what a join asks: the costliest check, and a flood of joins to lobbies
  // that are not there (or are full) should not pay for it.
  if (!validCandidates(t, from, msg)) return;
  const source = sourceKey(from.address);
  const bytes = memberBytes(msg);
  const admitted = admit(
    t,
    from,
    msg.requestId,
    bytes,
    (limits) => limits.addV2Member(now, source),
    'Too many players from your address.',
  );
  if (!admitted) return;
  // The member is back (its game restarted, or its NAT gave it a new address): the old
  // entry goes, and the new one is punched to everyone once it validates.
  if (same !== undefined) memberGone(t, now, session, same, 'rejoined');
  if (session.members.length >= 2 * session.maxPlayers) {
    const oldest = session.members.find((m) => !m.validated && !m.isHost);
    if (oldest !== undefined) {
      countRejection(t.counters, 'v2_unvalidated_evicted');
      removeMember(t, session, oldest);
    }
  }
  const member = newMember(t, now, msg, false, from, source, bytes);
  session.members.push(member);
  t.membersOpen++;
  schedule(t, session, now + VALIDATE_WITHIN_MS);
  registered(t, from, msg.requestId, session, member);
}

/**
 * A `join` under the name of a member of an open session, from another address, replaces
 * that member (docs/protocol-v2.md §4, "Rejoins") when it comes from the member's own IP
 * address (its game restarted on another port) or the member has been silent for a
 * keepalive period (it crashed, or its network changed). Otherwise the name is taken: a
 * stranger cannot push a live player out by joining under its name.
 */
export function mayRejoin(now: number, session: Session, same: Member, from: Endpoint): boolean {
  if (!isOpen(session) || same.isHost) return false;
  if (unmappedAddress(same.endpoint.address) === unmappedAddress(from.address)) return true;
  return now - same.lastSeenAt >= session.silenceMs / KEEPALIVES_PER_SILENCE;
}

export function newMember(
  t: V2Table,
  now: number,
  msg: Extract<V2Message, { type: 'host' | 'join' }>,
  isHost: boolean,
  endpoint: Endpoint,
  source: string,
  bytes: number,
): Member {
  return {
    name: msg.name,
    nickname: msg.nickname,
    isHost,
    endpoint,
    candidates: msg.candidates,
    nat: msg.nat ?? 'unknown',
    revision: msg.revision ?? 0,
    source,
    bytes,
    token: t.randomBytes(TOKEN_BYTES),
    validated: false,
    joinedAt: now,
    rebind: undefined,
    lastSeenAt: now,
    reportedSilent: false,
    ackedVersion: 0,
    peersTries: 0,
    peersNextAt: Number.POSITIVE_INFINITY,
    lobbySent: 0,
    peerEntry: undefined,
  };
}

/**
 * Marks `member` as receiving at its address: it enters the lobby, and a full lobby
 * autostarts. Returns true if that started the session.
 */
export function validate(t: V2Table, now: number, session: Session, member: Member): boolean {
  if (member.validated) return false;
  member.validated = true;
  member.lastSeenAt = now;
  memberEvent(
    t,
    'joined',
    session.name,
    member.name,
    session.state === 'started' ? 'late' : undefined,
    member.endpoint,
  );
  if (session.state !== 'waiting') {
    // A late joiner (or a rejoin) in an open session: everyone gets the new list.
    peersChanged(t, now, session);
    return false;
  }
  lobbyChanged(t, now, session);
  const full = t.autostart && validatedCount(session) >= session.maxPlayers;
  if (full) {
    // Everyone sees the full lobby before the peers.
    pushLobby(t, session);
    endSession(t, now, session, 'autostart');
  }
  return full;
}
