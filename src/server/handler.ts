import type { Endpoint } from '../protocol/index.js';

/**
 * Where a sans-IO core puts the datagrams it wants sent: a sink that only records them. The
 * rendezvous core binds it to its work queue (`ReplySink`, work-sink.ts), which the driver
 * pulls after the core returned; tests bind it to an array. It never calls back into a core.
 */
export interface Outbox {
  /**
   * `via`: which of the server's sockets sends it (`ServerSocket` in probe.ts); the main one
   * when absent. Only NAT diagnosis answers from another.
   */
  send(to: Endpoint, data: Uint8Array, via?: number): void;
}

/**
 * A protocol's half of the rendezvous server (legacy text or v2 binary). Pure: it never
 * reads a clock or touches a socket; `now` is milliseconds on any monotonic scale.
 */
export interface ProtocolHandler {
  /** Handles one untrusted datagram. Never throws. */
  handle(now: number, from: Endpoint, data: Uint8Array): void;
  /** The earliest `now` at which `handleTimeout` has work to do, or `Infinity`. */
  nextDeadline(): number;
  /** Runs expiries and retransmissions that are due at `now`. */
  handleTimeout(now: number): void;
  /** Tells every member of every open session that the server stops, then forgets them. */
  shutdown(now: number, reason: string): void;
  /** Open sessions (waiting or started-but-not-yet-forgotten). */
  readonly sessionCount: number;
}
