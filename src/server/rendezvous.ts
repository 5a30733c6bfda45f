import type { Endpoint } from '../protocol/endpoint.js';
import { CLOSE_REASONS, DEFAULT_MAX_PLAYERS_CAP } from '../protocol/legacy.js';
import { hasV2Prefix, V2_MAGIC_BYTES } from '../protocol/magic.js';
import { decodeV2, V2_TYPES } from '../protocol/v2.js';
import { countRejection, createCounters, type ServerCounters } from './counters.js';
import type { Outbox } from './handler.js';
import { DEFAULT_MAX_SESSIONS, LegacySessions, SESSION_TTL_MS } from './legacy-sessions.js';
import type { MemberLifecycleEvent, SessionLifecycleEvent } from './lifecycle.js';
import { ProbeResponder, type ServerSocket } from './probe.js';
import {
  DEFAULT_SOURCE_LIMITS,
  defaultMemoryBudgetBytes,
  MemoryBudget,
  type SourceLimitSettings,
  SourceLimits,
} from './source-limits.js';
import type { RelayIo, RelayLimits, RelayPortRange } from './v2-relay.js';
import { V2Sessions } from './v2-sessions.js';

export interface RendezvousServerOptions {
  /** Where replies go (the shell binds it to the socket; tests to an array). */
  readonly outbox: Outbox;
  /** Legacy AUTOSTART: `peers:` as soon as a session is full. Default true. */
  readonly autostart?: boolean;
  /** Default `SESSION_TTL_MS` (600 s). */
  readonly sessionTtlMs?: number;
  /** Per protocol. Default `DEFAULT_MAX_SESSIONS`. */
  readonly maxSessions?: number;
  /** Largest MAX a session may ask for. Default `DEFAULT_MAX_PLAYERS_CAP` (64). */
  readonly maxPlayersCap?: number;
  /**
   * Serve the legacy text protocol (default true). Off, every non-v2 datagram is dropped and
   * counted as `legacy_disabled`: legacy clients cannot prove their source address, so an
   * operator without old games can close that reflection path.
   */
  readonly legacy?: boolean;
  /**
   * Relay v2 members without a direct path (default true); runs only with `relayIo`, the
   * sockets of the relay ports (the shell's). See `V2SessionsOptions`.
   */
  readonly relay?: boolean;
  readonly relayIo?: RelayIo;
  /** Ports the relay binds, one per relayed pair. Default `DEFAULT_RELAY_PORTS`. */
  readonly relayPorts?: RelayPortRange;
  readonly relayLimits?: Partial<RelayLimits>;
  /** Random bytes for v2 tokens. Default: Web Crypto `getRandomValues`. */
  readonly randomBytes?: (bytes: number) => Uint8Array;
  /** Lifecycle events (created, started, closed, expired), for logs. */
  readonly onLifecycle?: (event: SessionLifecycleEvent) => void;
  /**
   * Members joining, leaving and refused, for logs. Legacy only for now: the v2 table reports
   * session events alone.
   */
  readonly onMember?: (event: MemberLifecycleEvent) => void;
  /** Share counters with another owner; default: fresh ones. */
  readonly counters?: ServerCounters;
  /**
   * Quotas per source address (IPv6: per /64), both protocols. Default
   * `DEFAULT_SOURCE_LIMITS`; `UNLIMITED_SOURCES` turns them off (benchmarks of one machine).
   */
  readonly sourceLimits?: SourceLimitSettings;
  /** Bytes of session state both tables may hold together. Default `defaultMemoryBudgetBytes()`. */
  readonly memoryBudgetBytes?: number;
  /**
   * NAT diagnosis: the server's second address and port (`--alt-address`, `--alt-port`),
   * announced in every `probe_reply` so a client can run every RFC 5780 test; '' and 0 when
   * the server has none.
   */
  readonly altAddress?: string;
  readonly altPort?: number;
}

function webCryptoRandomBytes(bytes: number): Uint8Array {
  return globalThis.crypto.getRandomValues(new Uint8Array(bytes));
}

/**
 * The whole rendezvous server without I/O: counts every datagram, routes v2 datagrams (by
 * their magic prefix) to the v2 table and everything else to the legacy table.
 */
export class RendezvousServer {
  readonly counters: ServerCounters;
  readonly legacy: LegacySessions;
  readonly v2: V2Sessions;
  /** Per-source quotas and the memory budget shared by both tables. */
  readonly limits: SourceLimits;
  readonly #legacyEnabled: boolean;
  readonly #probes: ProbeResponder;

  constructor(options: RendezvousServerOptions) {
    const counters = options.counters ?? createCounters();
    this.counters = counters;
    const target = options.outbox;
    // Counting at the one place every reply passes keeps the handlers free of it.
    const outbox: Outbox = {
      send(to: Endpoint, data: Uint8Array, via?: number): void {
        counters.datagramsOut++;
        counters.bytesOut += data.length;
        target.send(to, data, via);
      },
    };
    this.#probes = new ProbeResponder({
      outbox,
      counters,
      altAddress: options.altAddress ?? '',
      altPort: options.altPort ?? 0,
    });
    this.#legacyEnabled = options.legacy ?? true;
    const autostart = options.autostart ?? true;
    const sessionTtlMs = options.sessionTtlMs ?? SESSION_TTL_MS;
    const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    const maxPlayersCap = options.maxPlayersCap ?? DEFAULT_MAX_PLAYERS_CAP;
    this.limits = new SourceLimits(
      options.sourceLimits ?? DEFAULT_SOURCE_LIMITS,
      new MemoryBudget(options.memoryBudgetBytes ?? defaultMemoryBudgetBytes()),
    );
    const shared = {
      limits: this.limits,
      outbox,
      counters,
      autostart,
      sessionTtlMs,
      maxSessions,
      maxPlayersCap,
      ...(options.onLifecycle === undefined ? {} : { onLifecycle: options.onLifecycle }),
    };
    this.legacy = new LegacySessions({
      ...shared,
      ...(options.onMember === undefined ? {} : { onMember: options.onMember }),
    });
    this.v2 = new V2Sessions({
      ...shared,
      relay: options.relay ?? true,
      ...(options.relayIo === undefined ? {} : { relayIo: options.relayIo }),
      ...(options.relayPorts === undefined ? {} : { relayPorts: options.relayPorts }),
      ...(options.relayLimits === undefined ? {} : { relayLimits: options.relayLimits }),
      randomBytes: options.randomBytes ?? webCryptoRandomBytes,
    });
  }

  /**
   * Handles one untrusted datagram. Never throws. `via`: the socket it came in on; only the
   * main one serves sessions, the NAT diagnosis sockets answer `probe`s alone.
   */
  handle(now: number, from: Endpoint, data: Uint8Array, via: ServerSocket = 0): void {
    this.counters.datagramsIn++;
    this.counters.bytesIn += data.length;
    // Port 0 is no one's port (a forged source): nothing can be sent back to it, so nothing
    // about it is kept.
    if (from.port === 0) {
      countRejection(this.counters, 'source_port_zero');
      return;
    }
    // Before anything is decoded or kept: one O(1) bucket per source. Relayed game traffic
    // arrives on the relay ports (`handleRelay`), never here, so nothing is exempt (0x62, the
    // retired `relay_data`, used to be).
    if (!this.limits.admit(now, from.address)) {
      countRejection(this.counters, 'source_rate');
      return;
    }
    try {
      if (data[V2_MAGIC_BYTES] === V2_TYPES.probe && hasV2Prefix(data))
        this.#probe(via, from, data);
      else if (via !== 0) countRejection(this.counters, 'not_a_probe');
      else if (hasV2Prefix(data)) this.v2.handle(now, from, data);
      else if (this.#legacyEnabled) this.legacy.handle(now, from, data);
      else countRejection(this.counters, 'legacy_disabled');
    } catch {
      // Last line of defence: a bug must cost one datagram, not the server. Tests assert
      // that no input reaches this line.
      countRejection(this.counters, 'internal_error');
    }
  }

  #probe(via: ServerSocket, from: Endpoint, data: Uint8Array): void {
    const decoded = decodeV2(data);
    if (!decoded.ok || decoded.msg.type !== 'probe') {
      countRejection(this.counters, 'bad_probe');
      return;
    }
    this.#probes.handle(via, from, decoded.msg);
  }

  /** One datagram that arrived on relay port `port` (raw game traffic or a `relay_bind`). */
  handleRelay(now: number, port: number, from: Endpoint, data: Uint8Array): void {
    this.#guard(() => {
      const relay = this.v2.relay;
      if (relay === undefined) countRejection(this.counters, 'relay_no_allocation');
      else relay.handle(now, port, from, data);
    });
  }

  /** The shell bound relay port `port` (`ok`), or could not. */
  relayPortResult(now: number, port: number, ok: boolean): void {
    this.#guard(() => {
      if (ok) this.v2.relay?.portOpened(now, port);
      else this.v2.relay?.portFailed(now, port);
    });
  }

  /** The earliest `now` at which `handleTimeout` has work, or `Infinity`. */
  nextDeadline(): number {
    return Math.min(this.legacy.nextDeadline(), this.v2.nextDeadline());
  }

  handleTimeout(now: number): void {
    // Each protocol on its own: a fault in one never stops the other's timers.
    this.#guard(() => this.legacy.handleTimeout(now));
    this.#guard(() => this.v2.handleTimeout(now));
  }

  /**
   * The server is going to stop: waiting lobbies of both protocols are told `reason`, new
   * sessions are refused (v2 `server_full` "The server is shutting down.", legacy
   * `close:Server shutting down`), started v2 sessions and the relay go on.
   */
  drain(now: number, reason: string = CLOSE_REASONS.serverShutdown): void {
    this.#guard(() => this.legacy.drain(now, reason));
    this.#guard(() => this.v2.drain(now, reason));
  }

  /**
   * Nothing left to drain: no v2 session in the table (started ones are forgotten once every
   * member acked, at most 15 s after the start) and the relay forwarded nothing for `quietMs`.
   */
  drained(now: number, quietMs: number): boolean {
    if (this.v2.sessionCount > 0) return false;
    const relay = this.v2.relay;
    return relay === undefined || relay.size === 0 || now - relay.lastActiveAt >= quietMs;
  }

  /** Tells every member of every open session `close:Server shutting down` (legacy). */
  shutdown(now: number, reason: string = CLOSE_REASONS.serverShutdown): void {
    this.#guard(() => this.legacy.shutdown(now, reason));
    this.#guard(() => this.v2.shutdown(now, reason));
  }

  #guard(work: () => void): void {
    try {
      work();
    } catch {
      countRejection(this.counters, 'internal_error');
    }
  }

  /** Open sessions of both protocols. */
  get sessionCount(): number {
    return this.legacy.sessionCount + this.v2.sessionCount;
  }
}
