/**
 * The records of the v2 session table: a `Session` and its `Member`s, and the pure helpers
 * that read them (no table state, no sends). Apart so that every module of the table shares
 * one definition of what a session and a member are.
 */
import {
  bytesKey,
  type Endpoint,
  encodePeerEntry,
  type NatClass,
  unmappedAddress,
  type V2Message,
} from '../protocol/index.js';
import { MEMORY_COSTS } from './source-limits.js';

export interface Member {
  readonly name: string;
  readonly nickname: string;
  token: Uint8Array;
  readonly isHost: boolean;
  endpoint: Endpoint;
  readonly candidates: readonly Endpoint[];
  /** Its NAT class as it said in `host`/`join`, passed on to its peers. */
  readonly nat: NatClass;
  /** The revision of v2 it speaks (`host`/`join`): ≥ 1 gets the revision's trailers. */
  readonly revision: number;
  /** The member has shown that it receives at `endpoint` (see `VALIDATE_WITHIN_MS`). */
  validated: boolean;
  /** The source it registered from (`sourceKey`), charged for it until it is gone. */
  readonly source: string;
  /** Bytes charged for it against the memory budget. */
  readonly bytes: number;
  /** Registered at; an unvalidated member is dropped `VALIDATE_WITHIN_MS` later. */
  readonly joinedAt: number;
  /**
   * A token holder asked from another address (its NAT re-mapped it): that address got a
   * fresh token, and becomes the member's once a request carries that token from there.
   */
  rebind: { readonly endpoint: Endpoint; readonly token: Uint8Array } | undefined;
  /** The last request with its token from its endpoint (see `MEMBER_SILENCE_MS`). */
  lastSeenAt: number;
  /** The others were told that it did not ack its peers (`PEERS_ACK_WITHIN_MS`). */
  reportedSilent: boolean;
  /** The newest `peers` version it acked (0: none yet). */
  ackedVersion: number;
  peersTries: number;
  peersNextAt: number;
  /** The lobby version it was last sent (a validated member is told each newer one once). */
  lobbySent: number;
  /** Its `peers` entry (`peerEntry`), made when first sent; charged in `memberBytes`. */
  peerEntry: Uint8Array | undefined;
}

export interface Session {
  readonly name: string;
  /** Unique per session ever made here: relay allocations belong to it, not to the name. */
  readonly instance: number;
  /** The host's source, charged for the session until it is forgotten. */
  readonly source: string;
  /** Bytes charged for the session itself (members are charged on their own). */
  readonly bytes: number;
  readonly maxPlayers: number;
  readonly punchKey: Uint8Array;
  readonly members: Member[];
  state: 'waiting' | 'started';
  startedAt: number;
  /**
   * The host asked to keep the session open this long after the start (revision 1 `keepOpen`):
   * late joiners and rejoining members are taken and punched to everyone present. 0: closed
   * at the start.
   */
  readonly keepOpenMs: number;
  /** A validated member silent this long is gone (`MEMBER_SILENCE_MS` unless the host set it). */
  readonly silenceMs: number;
  /** Version of the peer list; each change after the start (join, rejoin, leave) makes a new one. */
  peersVersion: number;
  lobbyVersion: number;
  /** The lobby changed and its members have not all been told (`#lobbyChanged`). */
  lobbyPushDue: boolean;
  /** Waiting: expiry (refreshed by the host). Started: when it is forgotten. */
  deadline: number;
  /** The time of this session's live entry in the timer heap (Infinity: none). */
  timerAt: number;
  /** Set when the session left the table, so stale timer entries are skipped. */
  gone: boolean;
}

export type Request = Extract<
  V2Message,
  {
    type: 'host' | 'join' | 'start' | 'leave' | 'close' | 'keepalive' | 'peers_ack';
  }
>;

/**
 * A dual-stack server sees IPv4 clients as `::ffff:a.b.c.d`; peers on IPv4-only sockets
 * cannot send to that form, so the wire carries the plain IPv4 address.
 */
export function wireEndpoint(ep: Endpoint): Endpoint {
  const address = unmappedAddress(ep.address);
  return address === ep.address ? ep : { address, port: ep.port };
}

/** The member as its peers get it, encoded once (again after it moved: `rebind`). */
export function peerEntry(m: Member): Uint8Array {
  m.peerEntry ??= encodePeerEntry({
    name: m.name,
    nickname: m.nickname,
    isHost: m.isHost,
    publicEndpoint: wireEndpoint(m.endpoint),
    candidates: m.candidates,
    ...(m.nat === 'unknown' ? {} : { nat: m.nat }),
  });
  return m.peerEntry;
}

export function validatedCount(session: Session): number {
  let n = 0;
  for (const m of session.members) if (m.validated) n++;
  return n;
}

/** Bytes charged for a member against the memory budget (`MEMORY_COSTS`). */
export function memberBytes(msg: Extract<V2Message, { type: 'host' | 'join' }>): number {
  let text = msg.name.length + msg.nickname.length;
  for (const c of msg.candidates) text += c.address.length;
  return (
    MEMORY_COSTS.v2Member +
    MEMORY_COSTS.v2Candidate * msg.candidates.length +
    MEMORY_COSTS.v2TextByte * text +
    MEMORY_COSTS.v2PeerEntry +
    MEMORY_COSTS.v2PeerEntryTextByte * text
  );
}

export function relayMember(m: Member): {
  name: string;
  tokenKey: string;
  endpoint: Endpoint;
  isHost: boolean;
} {
  return { name: m.name, tokenKey: bytesKey(m.token), endpoint: m.endpoint, isHost: m.isHost };
}

export function sameToken(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/** The session takes late joiners and rejoins now (started with a `keepOpen`). */
export function isOpen(session: Session): boolean {
  return session.state === 'started' && session.keepOpenMs > 0;
}

export function hasAcked(session: Session, m: Member): boolean {
  return m.ackedVersion >= session.peersVersion;
}
