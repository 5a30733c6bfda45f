/**
 * The traversal's own timers as a table (quinn-proto's `connection/timer.rs` habit): one
 * named slot per timer, set, stopped and read by name, and the next wake-up is the minimum
 * over the table instead of over fields listed by hand. The parts the traversal is made of
 * (the classification probe, requests, relay binds, punch attempts, birthday sockets) keep
 * their own `nextDeadline`; `Traversal.nextDeadline` is this table's and theirs.
 */

/** Every timer of the traversal itself. */
export const TRAVERSAL_TIMERS = [
  /** `timeoutMs` from the start to success. */
  'timeout',
  /** The next keepalive (in the lobby, or an open session's after the start). */
  'keepalive',
  /** When the peers not confirmed directly get a relay asked for. */
  'relay',
] as const;
export type TraversalTimer = (typeof TRAVERSAL_TIMERS)[number];

export class TimerTable<T extends string> {
  readonly #at = new Map<T, number>();

  constructor(timers: readonly T[]) {
    for (const t of timers) this.#at.set(t, Number.POSITIVE_INFINITY);
  }

  /** When `timer` fires (`Infinity` when stopped). */
  get(timer: T): number {
    return this.#at.get(timer) ?? Number.POSITIVE_INFINITY;
  }

  set(timer: T, at: number): void {
    this.#at.set(timer, at);
  }

  stop(timer: T): void {
    this.#at.set(timer, Number.POSITIVE_INFINITY);
  }

  /** `timer` is due at `now`. */
  expired(timer: T, now: number): boolean {
    return now >= this.get(timer);
  }

  /** The earliest timer in the table. */
  next(): number {
    let next = Number.POSITIVE_INFINITY;
    for (const at of this.#at.values()) next = Math.min(next, at);
    return next;
  }
}
