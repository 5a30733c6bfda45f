/**
 * Requests to the server (register, start, keepalive, leave, close, relay) and how they are
 * retried: the timings, and the record of one request waiting for its answer. Apart from the
 * state machine (traversal.ts) because they are the traversal's contract with the server's
 * patience (its keepalive silence limit, docs/protocol-v2.md §4), read on their own.
 */

/** First retransmission of an unanswered request; doubles up to `REQUEST_RETRY_MAX_MS`. */
export const REQUEST_RETRY_FIRST_MS = 150;
export const REQUEST_RETRY_MAX_MS = 500;
/**
 * A server that answers nothing for this long is considered gone. Long enough that heavy
 * loss (half of all round trips lost) does not look like a dead server: ~40 tries.
 */
export const SERVER_SILENCE_LIMIT_MS = 20_000;
/** A join that meets `session_not_found` keeps trying this long (the host may start later). */
export const SESSION_WAIT_MS = 15_000;
/** Re-join after `session_not_found` this soon (players often start at the same moment). */
export const SESSION_WAIT_RETRY_MS = 100;
/** Keepalive period in a lobby: well under common UDP mapping timeouts (30 s and more). */
export const KEEPALIVE_INTERVAL_MS = 5_000;
/**
 * `leave` and `close` are sent at most this many times, 150/300/500 ms apart, so a goodbye
 * is acknowledged or given up within 1.5 s (then the server's keepalive silence limit,
 * 15 s, drops the member anyway).
 */
export const GOODBYE_MAX_TRIES = 4;

export type RequestKind = 'register' | 'start' | 'keepalive' | 'leave' | 'close' | 'relay';

export interface Pending {
  readonly kind: RequestKind;
  /** For `relay`: the peer it asks an allocation towards. */
  readonly peer?: string;
  readonly id: number;
  readonly bytes: Uint8Array;
  nextAt: number;
  intervalMs: number;
  tries: number;
  readonly firstAt: number;
}

/**
 * Our requests waiting for an answer, by request id, and their retransmission schedule.
 * Sans-IO: it records and schedules, the traversal sends.
 */
export class Requests {
  readonly #byId = new Map<number, Pending>();

  /** Records a request sent now for the first time. */
  add(now: number, kind: RequestKind, id: number, bytes: Uint8Array, peer?: string): void {
    this.#byId.set(id, {
      kind,
      ...(peer === undefined ? {} : { peer }),
      id,
      bytes,
      nextAt: now + REQUEST_RETRY_FIRST_MS,
      intervalMs: REQUEST_RETRY_FIRST_MS * 2,
      tries: 1,
      firstAt: now,
    });
  }

  get(id: number): Pending | undefined {
    return this.#byId.get(id);
  }

  delete(id: number): void {
    this.#byId.delete(id);
  }

  /** A request of one of `kinds` is waiting. */
  has(...kinds: RequestKind[]): boolean {
    for (const p of this.#byId.values()) if (kinds.includes(p.kind)) return true;
    return false;
  }

  /** Forgets every request of one of `kinds` (for `relay`, only those towards `peer` if given). */
  drop(kinds: readonly RequestKind[], peer?: string): void {
    for (const p of [...this.#byId.values()]) {
      if (kinds.includes(p.kind) && (peer === undefined || p.peer === peer))
        this.#byId.delete(p.id);
    }
  }

  clear(): void {
    this.#byId.clear();
  }

  /** A copy of the requests now waiting: one forgotten meanwhile stays in it. */
  snapshot(): Pending[] {
    return [...this.#byId.values()];
  }

  /** `p` was re-sent now: the next try after its interval, which doubles up to the max. */
  static resent(p: Pending, now: number): void {
    p.tries++;
    p.nextAt = now + p.intervalMs;
    p.intervalMs = Math.min(p.intervalMs * 2, REQUEST_RETRY_MAX_MS);
  }

  nextDeadline(): number {
    let next = Number.POSITIVE_INFINITY;
    for (const p of this.#byId.values()) next = Math.min(next, p.nextAt);
    return next;
  }
}
