/**
 * What the client says to the server (docs/protocol-v2.md §2, "Client → server"): each
 * request written from what the traversal knows, the codec (src/protocol) turning it into
 * bytes. Apart from the state machine, which decides *when* to ask, so what each request
 * carries reads in one place. Pure.
 */
import {
  encodeV2,
  isUnicastEndpoint,
  MAX_REASON_BYTES,
  type NatClass,
  padRegisterRequest,
  truncateUtf8,
  V2_REVISION,
} from '../protocol/index.js';
import type { TraversalOptions } from './traversal-options.js';

/** `host` or `join`, padded: the server's `registered` may be no larger than 3× the request. */
export function registerRequest(o: TraversalOptions, requestId: number, nat: NatClass): Uint8Array {
  const base = {
    requestId,
    session: o.session,
    name: o.name,
    nickname: o.nickname,
    // The server refuses a host/join with any candidate that is not a unicast IP literal.
    candidates: o.localCandidates.filter(isUnicastEndpoint),
    ...(nat === 'unknown' ? {} : { nat }),
    revision: V2_REVISION,
  };
  return padRegisterRequest(
    o.isHost
      ? encodeV2({
          type: 'host',
          maxPlayers: o.maxPlayers,
          ...base,
          keepOpenS: Math.round((o.keepOpenMs ?? 0) / 1000),
          silenceS: Math.round((o.memberSilenceMs ?? 0) / 1000),
        })
      : encodeV2({ type: 'join', ...base }),
  );
}

export function startRequest(session: string, token: Uint8Array, requestId: number): Uint8Array {
  return encodeV2({ type: 'start', requestId, session, token });
}

export function keepaliveRequest(
  session: string,
  token: Uint8Array,
  requestId: number,
  lobbyVersion: number,
): Uint8Array {
  return encodeV2({ type: 'keepalive', requestId, session, token, lobbyVersion });
}

/** `leave`, or `close` (host: the session for everyone) with `reason` cut to fit. */
export function goodbyeRequest(
  kind: 'leave' | 'close',
  session: string,
  token: Uint8Array,
  requestId: number,
  reason: string,
): Uint8Array {
  return kind === 'close'
    ? encodeV2({
        type: 'close',
        requestId,
        session,
        token,
        reason: truncateUtf8(reason, MAX_REASON_BYTES),
      })
    : encodeV2({ type: 'leave', requestId, session, token });
}

/** Acks a complete peer list (`version` from revision 1 on). */
export function peersAck(
  session: string,
  token: Uint8Array,
  requestId: number,
  version: number | undefined,
): Uint8Array {
  return encodeV2({
    type: 'peers_ack',
    requestId,
    session,
    token,
    ...(version === undefined ? {} : { version }),
  });
}

export function relayAllocate(
  session: string,
  token: Uint8Array,
  requestId: number,
  peer: string,
): Uint8Array {
  return encodeV2({ type: 'relay_allocate', requestId, session, token, peer });
}
