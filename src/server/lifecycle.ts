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
