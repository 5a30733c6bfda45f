/**
 * Counters kept by the sans-IO core and read by the shell (logs, `--stats`, benchmarks).
 * Plain numbers on one object: incrementing them costs nothing on the hot path.
 */
export interface ServerCounters {
  datagramsIn: number;
  datagramsOut: number;
  /** UDP payload bytes of every datagram received (headers not included). */
  bytesIn: number;
  /** UDP payload bytes of every datagram sent, relayed ones included. */
  bytesOut: number;
  /** Datagrams the relay forwarded between two members (each also counts in and out). */
  datagramsRelayed: number;
  /** Payload bytes of those datagrams (the relay forwards them unchanged). */
  relayBytes: number;
  sessionsCreated: number;
  sessionsStarted: number;
  sessionsExpired: number;
  sessionsClosed: number;
  /** Rejected or dropped datagrams by kind (e.g. `oversized`, `not_utf8`, `unknown_type`). */
  rejections: Record<string, number>;
  /** New relay allocations refused, by reason (`full`, `source_full`, `session_full`, `no_port`). */
  relayRefusals: Record<string, number>;
  /** Datagrams the relay dropped over a rate cap, by reason (`pair_rate`, `server_rate`). */
  relayDrops: Record<string, number>;
}

export function createCounters(): ServerCounters {
  return {
    datagramsIn: 0,
    datagramsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    datagramsRelayed: 0,
    relayBytes: 0,
    sessionsCreated: 0,
    sessionsStarted: 0,
    sessionsExpired: 0,
    sessionsClosed: 0,
    rejections: {},
    relayRefusals: {},
    relayDrops: {},
  };
}

export function countRejection(counters: ServerCounters, kind: string): void {
  counters.rejections[kind] = (counters.rejections[kind] ?? 0) + 1;
}
