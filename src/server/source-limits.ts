/**
 * What one source may cost the server, and what all of them together may hold
 * (docs/security.md, "Limits per source and in total"). Sans-IO like the tables: `now` comes in.
 *
 * A source is an IPv4 address, or an IPv6 /64 (one subscriber's prefix: a host has 2^64
 * addresses to send from, so counting addresses would count nothing). Every datagram first
 * passes the source's request bucket, an O(1) check before anything is decoded; then the
 * tables ask before they keep state: open v2 sessions and members per source, legacy session
 * and member buckets per source, and the memory budget for everything.
 *
 * Legacy sources can be forged, so a forger can spend a victim's legacy quotas. They are
 * therefore buckets that refill with time, never counts of open state: a victim's IP is locked
 * out for as long as the forgery goes on and a few seconds after, never longer. v2 state from a
 * forged source is unvalidated and gone 10 s later, so v2 counts open state.
 */

import { getHeapStatistics } from 'node:v8';
import { ipv6Groups, unmappedAddress } from '../protocol/index.js';

export interface SourceLimitSettings {
  /** Datagrams a source may send per second (token bucket), after a burst of `requestBurst`. */
  readonly requestsPerS: number;
  readonly requestBurst: number;
  /** `error` / refusal replies a source may get per second, after a burst; the rest go unanswered. */
  readonly errorsPerS: number;
  readonly errorBurst: number;
  /** v2 sessions a source may host at once (unvalidated ones included). */
  readonly v2Sessions: number;
  /** v2 members (hosts included) registered from a source at once. */
  readonly v2Members: number;
  /** Legacy `rs` a source may have accepted: a burst, then this many per second. */
  readonly legacySessionBurst: number;
  readonly legacySessionsPerS: number;
  /** Legacy members (`rc` of a new member) a source may add: a burst, then this many per second. */
  readonly legacyMemberBurst: number;
  readonly legacyMembersPerS: number;
}

/**
 * Defaults. A LAN party of 32 behind one NAT address (joins, keepalives every 5 s, acks)
 * sends well under 100 datagrams at once and a few per second; twice that is allowed. One
 * address hosting more than 16 lobbies at once, or holding more than 64 members (two full
 * 32-player lobbies), is not a game.
 */
export const DEFAULT_SOURCE_LIMITS: SourceLimitSettings = {
  requestsPerS: 200,
  requestBurst: 400,
  errorsPerS: 10,
  errorBurst: 20,
  v2Sessions: 16,
  v2Members: 64,
  legacySessionBurst: 16,
  legacySessionsPerS: 0.25,
  legacyMemberBurst: 64,
  legacyMembersPerS: 1,
};

/**
 * Heap bytes charged per piece of state against the memory budget. Measured with
 * `--expose-gc` (test/memory-costs.test.ts checks the charge covers the heap and buffers it
 * takes) and rounded up: a v2 member costs ~0.5 KiB plus its strings, a candidate ~0.15 KiB.
 */
export const MEMORY_COSTS = {
  v2Session: 1024,
  v2Member: 768,
  v2Candidate: 192,
  /** Per byte of name, nickname and session name (JS strings, two-byte when not Latin-1). */
  v2TextByte: 4,
  /**
   * A v2 member's encoded `peers` entry, kept once its game starts: the typed array, its
   * buffer and the fixed fields, plus up to 3 UTF-8 bytes per UTF-16 unit of its text.
   */
  v2PeerEntry: 256,
  v2PeerEntryTextByte: 3,
  legacySession: 640,
  /** Fields at their largest (64-byte NAME, 32-byte NICKNAME) plus the name index. */
  legacyMember: 768,
  source: 256,
} as const;

/** Part of V8's heap limit that session state may hold when no `--memory-budget` is given. */
export const DEFAULT_MEMORY_BUDGET_SHARE = 0.4;

/** `DEFAULT_MEMORY_BUDGET_SHARE` of this process's V8 heap limit. */
export function defaultMemoryBudgetBytes(): number {
  return Math.floor(getHeapStatistics().heap_size_limit * DEFAULT_MEMORY_BUDGET_SHARE);
}

/** A source's buckets and counts. Buckets hold tokens; `at` is when they were last refilled. */
interface SourceState {
  req: number;
  reqAt: number;
  err: number;
  errAt: number;
  ls: number;
  lsAt: number;
  lm: number;
  lmAt: number;
  v2Sessions: number;
  v2Members: number;
}

// The source table is swept for idle entries when it reaches this size (then twice its size).
const SWEEP_MIN = 4096;
// A sweep that freed too little is not repeated sooner than this.
const SWEEP_INTERVAL_MS = 1000;

/**
 * The source of `address`: the address itself for IPv4 (an IPv4-mapped IPv6 address is
 * IPv4), its /64 prefix for IPv6.
 */
export function sourceKey(address: string): string {
  if (!address.includes(':')) return address;
  const unmapped = unmappedAddress(address);
  if (unmapped !== address) return unmapped;
  const g = ipv6Groups(address);
  if (g === undefined) return address;
  return `${g[0]?.toString(16)}:${g[1]?.toString(16)}:${g[2]?.toString(16)}:${g[3]?.toString(16)}::/64`;
}

/** Bytes of session state the server may hold; a reservation past it is refused. */
export class MemoryBudget {
  readonly limit: number;
  used = 0;

  constructor(limitBytes: number) {
    this.limit = limitBytes;
  }

  /** Reserves `bytes` if they fit under the limit. */
  reserve(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}

function refill(tokens: number, at: number, now: number, perS: number, burst: number): number {
  const elapsed = now - at;
  if (elapsed <= 0) return tokens;
  return Math.min(burst, tokens + (elapsed * perS) / 1000);
}

export class SourceLimits {
  readonly settings: SourceLimitSettings;
  readonly budget: MemoryBudget;
  readonly #sources = new Map<string, SourceState>();
  /** Per-source limits off (`UNLIMITED_SOURCES`): nothing is tracked, only the budget holds. */
  readonly #off: boolean;
  #sweepAt = SWEEP_MIN;
  #lastSweep = Number.NEGATIVE_INFINITY;

  constructor(settings: SourceLimitSettings, budget: MemoryBudget) {
    this.settings = settings;
    this.budget = budget;
    this.#off = settings.requestsPerS === Number.POSITIVE_INFINITY;
  }

  get enabled(): boolean {
    return !this.#off;
  }

  /** Sources tracked now (diagnostics, tests). */
  get sourceCount(): number {
    return this.#sources.size;
  }

  /**
   * The state of `key`, created full if new. Undefined when the memory budget cannot hold a
   * new source even after idle ones were forgotten: the datagram is then dropped.
   */
  #state(now: number, key: string): SourceState | undefined {
    const found = this.#sources.get(key);
    if (found !== undefined) return found;
    if (this.#sources.size >= this.#sweepAt) this.#sweep(now);
    if (!this.budget.reserve(MEMORY_COSTS.source)) {
      if (now - this.#lastSweep < SWEEP_INTERVAL_MS) return undefined;
      this.#sweep(now);
      if (!this.budget.reserve(MEMORY_COSTS.source)) return undefined;
    }
    const s = this.settings;
    const state: SourceState = {
      req: s.requestBurst,
      reqAt: now,
      err: s.errorBurst,
      errAt: now,
      ls: s.legacySessionBurst,
      lsAt: now,
      lm: s.legacyMemberBurst,
      lmAt: now,
      v2Sessions: 0,
      v2Members: 0,
    };
    this.#sources.set(key, state);
    return state;
  }

  /** Forgets sources whose buckets are full again and that hold nothing: amortised O(1). */
  #sweep(now: number): void {
    this.#lastSweep = now;
    const s = this.settings;
    for (const [key, st] of this.#sources) {
      if (st.v2Sessions > 0 || st.v2Members > 0) continue;
      if (refill(st.req, st.reqAt, now, s.requestsPerS, s.requestBurst) < s.requestBurst) continue;
      if (refill(st.err, st.errAt, now, s.errorsPerS, s.errorBurst) < s.errorBurst) continue;
      const ls = refill(st.ls, st.lsAt, now, s.legacySessionsPerS, s.legacySessionBurst);
      if (ls < s.legacySessionBurst) continue;
      const lm = refill(st.lm, st.lmAt, now, s.legacyMembersPerS, s.legacyMemberBurst);
      if (lm < s.legacyMemberBurst) continue;
      this.#sources.delete(key);
      this.budget.release(MEMORY_COSTS.source);
    }
    this.#sweepAt = Math.max(SWEEP_MIN, this.#sources.size * 2);
  }

  /** One datagram from `address`: false when its source has spent its request bucket. */
  admit(now: number, address: string): boolean {
    if (this.#off) return true;
    const st = this.#state(now, sourceKey(address));
    if (st === undefined) return false;
    st.req = refill(st.req, st.reqAt, now, this.settings.requestsPerS, this.settings.requestBurst);
    st.reqAt = now;
    if (st.req < 1) return false;
    st.req -= 1;
    return true;
  }

  /** An error or refusal for `address`: false when its source has had its share. */
  allowError(now: number, address: string): boolean {
    if (this.#off) return true;
    const st = this.#state(now, sourceKey(address));
    if (st === undefined) return false;
    st.err = refill(st.err, st.errAt, now, this.settings.errorsPerS, this.settings.errorBurst);
    st.errAt = now;
    if (st.err < 1) return false;
    st.err -= 1;
    return true;
  }

  /** Takes one legacy session from the source's bucket. */
  takeLegacySession(now: number, address: string): boolean {
    if (this.#off) return true;
    const st = this.#state(now, sourceKey(address));
    if (st === undefined) return false;
    const s = this.settings;
    st.ls = refill(st.ls, st.lsAt, now, s.legacySessionsPerS, s.legacySessionBurst);
    st.lsAt = now;
    if (st.ls < 1) return false;
    st.ls -= 1;
    return true;
  }

  /** Takes one legacy member from the source's bucket. */
  takeLegacyMember(now: number, address: string): boolean {
    if (this.#off) return true;
    const st = this.#state(now, sourceKey(address));
    if (st === undefined) return false;
    const s = this.settings;
    st.lm = refill(st.lm, st.lmAt, now, s.legacyMembersPerS, s.legacyMemberBurst);
    st.lmAt = now;
    if (st.lm < 1) return false;
    st.lm -= 1;
    return true;
  }

  /** Counts one more open v2 session (and its host member) of `key`, if under the caps. */
  openV2Session(now: number, key: string): boolean {
    if (this.#off) return true;
    const st = this.#state(now, key);
    if (st === undefined) return false;
    if (st.v2Sessions >= this.settings.v2Sessions || st.v2Members >= this.settings.v2Members) {
      return false;
    }
    st.v2Sessions++;
    st.v2Members++;
    return true;
  }

  closeV2Session(key: string): void {
    const st = this.#sources.get(key);
    if (st !== undefined && st.v2Sessions > 0) st.v2Sessions--;
  }

  /** Counts one more open v2 member of `key`, if under the cap. */
  addV2Member(now: number, key: string): boolean {
    if (this.#off) return true;
    const st = this.#state(now, key);
    if (st === undefined || st.v2Members >= this.settings.v2Members) return false;
    st.v2Members++;
    return true;
  }

  removeV2Member(key: string): void {
    const st = this.#sources.get(key);
    if (st !== undefined && st.v2Members > 0) st.v2Members--;
  }
}

/** Per-source limits off: every check passes; the memory budget still holds. */
export const UNLIMITED_SOURCES: SourceLimitSettings = {
  requestsPerS: Number.POSITIVE_INFINITY,
  requestBurst: Number.POSITIVE_INFINITY,
  errorsPerS: Number.POSITIVE_INFINITY,
  errorBurst: Number.POSITIVE_INFINITY,
  v2Sessions: Number.POSITIVE_INFINITY,
  v2Members: Number.POSITIVE_INFINITY,
  legacySessionBurst: Number.POSITIVE_INFINITY,
  legacySessionsPerS: Number.POSITIVE_INFINITY,
  legacyMemberBurst: Number.POSITIVE_INFINITY,
  legacyMembersPerS: Number.POSITIVE_INFINITY,
};
