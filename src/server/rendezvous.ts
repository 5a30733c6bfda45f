import { type Core, MAIN_SOCKET, type SocketId, type Work, WorkQueue } from '../core/index.js';
import type { Endpoint } from '../protocol/index.js';
import {
  CLOSE_REASONS,
  decodeV2,
  hasV2Prefix,
  V2_MAGIC_BYTES,
  V2_TYPES,
} from '../protocol/index.js';
import { countRejection, createCounters, type ServerCounters } from './counters.js';
import type { Outbox } from './handler.js';
import { LegacySessions } from './legacy-sessions.js';
import type { MemberLifecycleEvent, SessionLifecycleEvent } from './lifecycle.js';
import { ProbeResponder, type ServerSocket } from './probe.js';
import { resolveServerSettings, type ServerSettings } from './settings.js';
import { MemoryBudget, SourceLimits } from './source-limits.js';
import { MIN_RELAY_PORT, type RelayIo } from './v2-relay.js';
import { V2Sessions } from './v2-sessions.js';
import { RelaySocketSink, ReplySink } from './work-sink.js';

/**
 * What the server reports for its logs and metrics, handed to the application by the driver
 * after the core returned: session state changes of both protocols, and legacy members
 * joining, leaving and being refused (the v2 table reports session events alone).
 */
export type ServerEvent = SessionLifecycleEvent | MemberLifecycleEvent;

/** Whether `event` is about a member (else it is about a session). */
export function isMemberEvent(event: ServerEvent): event is MemberLifecycleEvent {
  return event.type === 'joined' || event.type === 'left' || event.type === 'refused';
}

/** Every server setting (`ServerSettings`, defaults there) plus what the core is injected. */
export interface RendezvousServerOptions extends Partial<ServerSettings> {
  /** Random bytes for v2 tokens. Default: Web Crypto `getRandomValues`. */
  readonly randomBytes?: (bytes: number) => Uint8Array;
  /** Share counters with another owner; default: fresh ones. */
  readonly counters?: ServerCounters;
}

function webCryptoRandomBytes(bytes: number): Uint8Array {
  return globalThis.crypto.getRandomValues(new Uint8Array(bytes));
}

/** Socket ids at or above this are relay ports; below it, the main and probe sockets. */
function isRelaySocket(socket: SocketId): boolean {
  return socket >= MIN_RELAY_PORT;
}

/**
 * The whole rendezvous server without I/O: counts every datagram, routes v2 datagrams (by
 * their magic prefix) to the v2 table and everything else to the legacy table. Replies,
 * relay port binds and log events wait in one queue for the driver's `poll()`.
 */
export class RendezvousServer implements Core<ServerEvent> {
  readonly counters: ServerCounters;
  readonly legacy: LegacySessions;
  readonly v2: V2Sessions;
  /** Per-source quotas and the memory budget shared by both tables. */
  readonly limits: SourceLimits;
  /** The settings in force, every default filled in. */
  readonly settings: ServerSettings;
  readonly #legacyEnabled: boolean;
  readonly #probes: ProbeResponder;
  readonly #work = new WorkQueue<ServerEvent>();

  /** Throws a `bad_request` HolePunchError for settings it cannot run with (relay ports). */
  constructor(options: RendezvousServerOptions = {}) {
    const settings = resolveServerSettings(options);
    this.settings = settings;
    const counters = options.counters ?? createCounters();
    this.counters = counters;
    const work = this.#work;
    // Sinks that only append to the work queue: the tables never call back into the server.
    const outbox: Outbox = new ReplySink(work, counters);
    const relayIo: RelayIo = new RelaySocketSink(work);
    this.#probes = new ProbeResponder({
      outbox,
      counters,
      altAddress: settings.altAddress,
      altPort: settings.altPort,
    });
    this.#legacyEnabled = settings.legacy;
    this.limits = new SourceLimits(
      settings.sourceLimits,
      new MemoryBudget(settings.memoryBudgetBytes),
    );
    const onLifecycle = (event: SessionLifecycleEvent): void => work.event(event);
    const shared = {
      limits: this.limits,
      outbox,
      counters,
      autostart: settings.autostart,
      sessionTtlMs: settings.sessionTtlMs,
      maxSessions: settings.maxSessions,
      maxPlayersCap: settings.maxPlayersCap,
      onLifecycle,
    };
    this.legacy = new LegacySessions({
      ...shared,
      onMember: (event) => work.event(event),
    });
    this.v2 = new V2Sessions({
      ...shared,
      onMember: (event) => work.event(event),
      relay: settings.relay,
      relayIo,
      relayPorts: settings.relayPorts,
      relayLimits: settings.relayLimits,
      randomBytes: options.randomBytes ?? webCryptoRandomBytes,
    });
  }

  /** The next reply, relay port bind or log event, in the order they arose. */
  poll(): Work<ServerEvent> | undefined {
    return this.#work.poll();
  }

  /**
   * Handles one untrusted datagram. Never throws. `socket`: where it came in. Only the main
   * one serves sessions, the NAT diagnosis sockets (1-3) answer `probe`s alone, and a relay
   * port (its own number) carries raw game traffic and `relay_bind`s.
   */
  handle(now: number, from: Endpoint, data: Uint8Array, socket: SocketId = MAIN_SOCKET): void {
    if (isRelaySocket(socket)) {
      this.#relay(now, socket, from, data);
      return;
    }
    this.counters.datagramsIn++;
    this.counters.bytesIn += data.length;
    // Port 0 is no one's port (a forged source): nothing can be sent back to it, so nothing
    // about it is kept.
    if (from.port === 0) {
      countRejection(this.counters, 'source_port_zero');
      return;
    }
    // Before anything is decoded or kept: one O(1) bucket per source. Relayed game traffic
    // arrives on the relay ports, never here, so nothing is exempt (0x62, the retired
    // `relay_data`, used to be).
    if (!this.limits.admit(now, from.address)) {
      countRejection(this.counters, 'source_rate');
      return;
    }
    try {
      if (data[V2_MAGIC_BYTES] === V2_TYPES.probe && hasV2Prefix(data))
        this.#probe(socket as ServerSocket, from, data);
      else if (socket !== MAIN_SOCKET) countRejection(this.counters, 'not_a_probe');
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

  /** Raw game traffic or a `relay_bind` on relay port `port`; the relay counts it. */
  #relay(now: number, port: number, from: Endpoint, data: Uint8Array): void {
    this.#guard(() => {
      const relay = this.v2.relay;
      if (relay === undefined) countRejection(this.counters, 'relay_no_allocation');
      else relay.handle(now, port, from, data);
    });
  }

  /** The driver bound relay port `socket` (`ok`), or could not. */
  bound(now: number, socket: SocketId, ok: boolean): void {
    if (!isRelaySocket(socket)) return;
    this.#guard(() => {
      if (ok) this.v2.relay?.portOpened(now, socket);
      else this.v2.relay?.portFailed(now, socket);
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
