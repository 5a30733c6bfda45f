/**
 * Punches towards late peers of an open session (docs/protocol-v2.md §4, "Open sessions"):
 * members who joined after the start, or came back under their name from another address,
 * each newer list punched by an attempt of its own. Apart from the traversal because the
 * first punch decides success or failure, while these only report a peer joined or failed,
 * and are forgotten once they stop answering. Sans-IO: it holds the attempts; the traversal
 * drives them and reports.
 */
import type { PunchAttempt } from './punch.js';

/** A late peer list's punch: its attempt and when it asks for the relay. */
export interface LatePunch {
  readonly attempt: PunchAttempt;
  relayAt: number;
  reported: boolean;
}

export class LatePunches {
  /** Newest last. */
  #list: LatePunch[] = [];

  get all(): readonly LatePunch[] {
    return this.#list;
  }

  add(attempt: PunchAttempt): LatePunch {
    const late: LatePunch = { attempt, relayAt: Number.POSITIVE_INFINITY, reported: false };
    this.#list.push(late);
    return late;
  }

  /** The late attempt that punches `name` (the newest one: a rejoin replaces an older entry). */
  for(name: string): LatePunch | undefined {
    for (let i = this.#list.length - 1; i >= 0; i--) {
      const l = this.#list[i] as LatePunch;
      if (l.attempt.has(name)) return l;
    }
    return undefined;
  }

  nextDeadline(): number {
    let next = Number.POSITIVE_INFINITY;
    for (const l of this.#list) next = Math.min(next, l.attempt.nextDeadline(), l.relayAt);
    return next;
  }

  /** The attempts that settled since last asked, oldest first: to report, once. */
  settled(): PunchAttempt[] {
    const settled: PunchAttempt[] = [];
    for (const l of this.#list) {
      if (l.reported || l.attempt.state === 'punching') continue;
      l.reported = true;
      l.relayAt = Number.POSITIVE_INFINITY;
      settled.push(l.attempt);
    }
    return settled;
  }

  /** Forgets reported attempts once they stop answering (their linger is over). */
  prune(now: number): void {
    this.#list = this.#list.filter((l) => !l.reported || now <= l.attempt.lingerUntil);
  }
}
