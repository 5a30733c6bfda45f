/**
 * The v2 requests of a registered member (`start`, `close`, `leave`, `keepalive`,
 * `peers_ack`) and relay allocation; `host` and `join` go to registration.
 */
import type { ErrorCode } from '../errors.js';
import {
  bytesKey,
  type Endpoint,
  encodeV2,
  sameEndpoint,
  sealPush,
  type V2Message,
} from '../protocol/index.js';
import { endSession, forgetIfAllAcked, memberGone } from './v2-endings.js';
import { lobbyBody, sendPeers } from './v2-pushes.js';
import { memberByToken, sendRebind } from './v2-rebind.js';
import { registerHost, registerJoin, validate } from './v2-registration.js';
import { RELAY_REFUSAL_MESSAGES } from './v2-relay.js';
import { memberEvent, refuse, send } from './v2-replies.js';
import { isOpen, type Member, type Request, relayMember } from './v2-session-records.js';
import type { V2Table } from './v2-session-table.js';

export function handleRequest(t: V2Table, now: number, from: Endpoint, msg: Request): void {
  switch (msg.type) {
    case 'host':
    case 'join':
      t.registering = { session: msg.session, name: msg.name };
      try {
        if (msg.type === 'host') registerHost(t, now, from, msg);
        else registerJoin(t, now, from, msg);
      } finally {
        t.registering = undefined;
      }
      return;
    default:
      break;
  }
  const session = t.sessions.get(msg.session);
  if (session === undefined) {
    // A game that ends long after its start says goodbye to a session the table forgot:
    // its relay allocations go with it.
    if (msg.type === 'leave' || msg.type === 'close') {
      t.relay?.closeByToken(bytesKey(msg.token), from, msg.type === 'close');
    }
    refuse(t, from, msg.requestId, 'session_not_found', 'No such session.');
    return;
  }
  const member = memberByToken(session, msg.token, from);
  if (member === undefined) {
    refuse(t, from, msg.requestId, 'not_authorized', 'Token is not a member of this session.');
    return;
  }
  const here = sameEndpoint(member.endpoint, from);
  if (here) member.lastSeenAt = now;
  switch (msg.type) {
    case 'start':
      if (!member.isHost) {
        refuse(t, from, msg.requestId, 'not_authorized', 'Only the host can start.');
        return;
      }
      if (!here) {
        sendRebind(t, from, msg.requestId, session, member);
        return;
      }
      send(t, from, encodeV2({ type: 'ok', requestId: msg.requestId }));
      if (validate(t, now, session, member)) return;
      if (session.state === 'waiting') endSession(t, now, session, 'exchange_peers');
      return;
    case 'close':
      if (!member.isHost) {
        refuse(t, from, msg.requestId, 'not_authorized', 'Only the host can close.');
        return;
      }
      send(t, from, encodeV2({ type: 'ok', requestId: msg.requestId }));
      endSession(
        t,
        now,
        session,
        session.state === 'waiting' ? 'host_closed' : 'host_closed_started',
        msg.reason || 'Session closed by the host.',
        member,
      );
      return;
    case 'leave':
      send(t, from, encodeV2({ type: 'ok', requestId: msg.requestId }));
      if (member.isHost && session.state === 'waiting') {
        endSession(t, now, session, 'host_left', 'The host left.', member);
        return;
      }
      // An open session is the host's game: it ends with the host, as a lobby does.
      if (member.isHost && isOpen(session)) {
        endSession(t, now, session, 'host_left_open', 'The host left.', member);
        return;
      }
      memberGone(t, now, session, member, 'left');
      return;
    case 'keepalive':
      if (!here) {
        sendRebind(t, from, msg.requestId, session, member);
        return;
      }
      // Autostarted by this member's arrival: the `lobby` and `peers` pushes answer it.
      if (validate(t, now, session, member)) return;
      if (session.state === 'waiting') {
        if (member.isHost) session.deadline = now + t.ttlMs;
        member.lobbySent = session.lobbyVersion;
        send(t, from, sealPush(member.token, lobbyBody(session, msg.requestId)));
      } else sendPeers(t, now, session, member, msg.requestId);
      return;
    case 'peers_ack':
      send(t, from, encodeV2({ type: 'ok', requestId: msg.requestId }));
      // A lobby has no peers to ack: an ack before the start must neither spare the member
      // its `peers` pushes nor make the lobby vanish (uncounted) once every member sent one.
      if (session.state !== 'started') return;
      // An ack without a version (revision 0) acks the list the member was last sent.
      member.ackedVersion = Math.max(
        member.ackedVersion,
        Math.min(msg.version ?? session.peersVersion, session.peersVersion),
      );
      forgetIfAllAcked(t, now, session);
      return;
  }
}

export function relayAllocate(
  t: V2Table,
  now: number,
  from: Endpoint,
  msg: Extract<V2Message, { type: 'relay_allocate' }>,
): void {
  const started = t.started.get(bytesKey(msg.token));
  const session = started?.session.name === msg.session ? started.session : undefined;
  const member = session === undefined ? undefined : started?.member;
  const peer = session?.members.find((m) => m.name === msg.peer && m !== member);
  const refusal = relayRefusal(t, from, member, peer);
  const relay = t.relay;
  if (refusal || !session || !member || !peer || !relay) {
    const [code, message] = refusal ?? ['not_authorized', 'No started session has this token.'];
    refuse(t, from, msg.requestId, code, message);
    return;
  }
  const before = relay.size;
  const refused = relay.allocate(now, {
    instance: session.instance,
    maxPlayers: session.maxPlayers,
    self: relayMember(member),
    peer: relayMember(peer),
    requestId: msg.requestId,
  });
  if (refused !== undefined) {
    // Logged by the shell once per interval with the counts by reason (a flood of asks
    // would otherwise write a line per request).
    refuse(t, from, msg.requestId, 'relay_unavailable', RELAY_REFUSAL_MESSAGES[refused]);
  } else if (relay.size > before) {
    memberEvent(t, 'relayed', session.name, member.name, peer.name, from);
  }
}

export function relayRefusal(
  t: V2Table,
  from: Endpoint,
  member: Member | undefined,
  peer: Member | undefined,
): [ErrorCode, string] | undefined {
  if (t.relay === undefined) return ['relay_unavailable', 'This server does not relay.'];
  if (member === undefined) return ['not_authorized', 'No started session has this token.'];
  // The relay sends to the member's validated endpoint, so only that endpoint may ask.
  if (!sameEndpoint(member.endpoint, from)) {
    return ['not_authorized', 'Ask from the address the session knows.'];
  }
  if (peer === undefined) return ['bad_request', 'No such peer in this session.'];
  return undefined;
}
