/**
 * One session lifecycle event, reported by a session table to the shell (which logs it at
 * `info`). Emitted per session state change, never per datagram.
 */
export interface SessionLifecycleEvent {
  readonly type: 'created' | 'started' | 'closed' | 'expired';
  readonly protocol: 'legacy' | 'v2';
  readonly key: string;
  readonly maxPlayers: number;
  /** Members at the time of the event. */
  readonly members: number;
  /**
   * `started`: what started it (`autostart` or `exchange_peers`); `closed`/`expired`: the
   * `close:` reason the members were told; `created`: undefined.
   */
  readonly reason: string | undefined;
}

/**
 * One member joining, leaving or being refused, reported to the shell (which logs it at
 * `info`, rate-limited, with the address only at `debug`). Emitted per membership change or
 * refused registration, never for a retransmission that changes nothing.
 */
export interface MemberLifecycleEvent {
  /** `relayed`: v2 only, a new relay allocation for the member towards `reason` (a peer). */
  readonly type: 'joined' | 'left' | 'refused' | 'relayed';
  readonly protocol: 'legacy' | 'v2';
  /** The session joined, left or asked for. */
  readonly key: string;
  /** The member's NAME; undefined for a refused session registration (`rs`). */
  readonly name: string | undefined;
  /**
   * `left`: `check_out` (it sent `cc`) or `moved` (it registered in another session);
   * `refused`: the refusal kind counted in `rejections` (`session_full`, `name_taken`, …).
   */
  readonly reason: string | undefined;
  readonly address: string;
  readonly port: number;
}
