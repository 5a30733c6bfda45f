/**
 * The rendezvous server's settings, declared and defaulted here alone: the core
 * (`RendezvousServerOptions`), the shell (`StartServerOptions`), the session tables and the
 * CLI take them from `ServerSettings`, and every default is in `DEFAULT_SERVER_SETTINGS`.
 */
import { HolePunchError } from '../errors.js';
import { DEFAULT_MAX_PLAYERS_CAP } from '../protocol/index.js';
import {
  DEFAULT_SOURCE_LIMITS,
  defaultMemoryBudgetBytes,
  type SourceLimitSettings,
} from './source-limits.js';
import {
  DEFAULT_RELAY_PORTS,
  type RelayLimits,
  type RelayPortRange,
  relayPortRangeProblem,
} from './v2-relay.js';

/** Sessions expire this long after they were registered (the original's later revision: 600 s). */
export const SESSION_TTL_MS = 600_000;

/** Default `--max-sessions`: bounds memory (≈ 1 KiB per session) against `rs` floods. */
export const DEFAULT_MAX_SESSIONS = 1_000_000;

export interface ServerSettings {
  /** Legacy AUTOSTART (`y`): `peers:` as soon as a session is full. Default true. */
  readonly autostart: boolean;
  /** A session expires this long after its registration. Default `SESSION_TTL_MS` (600 s). */
  readonly sessionTtlMs: number;
  /** Open sessions per protocol. Default `DEFAULT_MAX_SESSIONS`. */
  readonly maxSessions: number;
  /** Largest MAX a session may ask for. Default `DEFAULT_MAX_PLAYERS_CAP` (64). */
  readonly maxPlayersCap: number;
  /**
   * Serve the legacy text protocol (default true). Off, every non-v2 datagram is dropped and
   * counted as `legacy_disabled`: legacy clients cannot prove their source address, so an
   * operator without old games can close that reflection path.
   */
  readonly legacy: boolean;
  /** Relay v2 members without a direct path (default true; `--no-relay` turns it off). */
  readonly relay: boolean;
  /**
   * UDP ports the relay binds on the server's address, one per relayed pair, bound when a
   * pair asks and released when it closes (`--relay-ports LOW-HIGH`), from `MIN_RELAY_PORT`.
   * Default `DEFAULT_RELAY_PORTS` (40000-40999). Open them in the firewall (docs/server.md).
   */
  readonly relayPorts: RelayPortRange;
  /**
   * Caps of the relay (per pair and in total per second, per session, per source's share of
   * the ports); defaults in v2-relay.ts, flags `--relay-pair-packets` and the like.
   */
  readonly relayLimits: Partial<RelayLimits>;
  /**
   * Quotas per source address (IPv6: per /64), both protocols. Default
   * `DEFAULT_SOURCE_LIMITS`; `UNLIMITED_SOURCES` turns them off (benchmarks of one machine).
   */
  readonly sourceLimits: SourceLimitSettings;
  /**
   * Bytes of session state both tables may hold together. Default
   * `defaultMemoryBudgetBytes()`, a share of this process's heap limit.
   */
  readonly memoryBudgetBytes: number;
  /**
   * NAT diagnosis (`holepunch-client doctor`, `--alt-address`, `--alt-port`): a second address
   * of this machine and/or a second port from which the server answers probes that ask for
   * it, announced in every `probe_reply` so clients can run every RFC 5780 test. '' and 0:
   * none (the core's default: it has no sockets). The shell (`startServer`) binds an
   * alternate port by default, PORT+1 (`DEFAULT_ALT_PORT_OFFSET`), and gives the core the port
   * it bound; its `altAddress` needs `host`, since replies must leave from the address they
   * were sent to; only probes are served there.
   */
  readonly altAddress: string;
  readonly altPort: number;
}

export const DEFAULT_SERVER_SETTINGS: Readonly<Omit<ServerSettings, 'memoryBudgetBytes'>> = {
  autostart: true,
  sessionTtlMs: SESSION_TTL_MS,
  maxSessions: DEFAULT_MAX_SESSIONS,
  maxPlayersCap: DEFAULT_MAX_PLAYERS_CAP,
  legacy: true,
  relay: true,
  relayPorts: DEFAULT_RELAY_PORTS,
  relayLimits: {},
  sourceLimits: DEFAULT_SOURCE_LIMITS,
  altAddress: '',
  altPort: 0,
};

/**
 * `options` with every setting it leaves out (or sets to undefined) taken from
 * `DEFAULT_SERVER_SETTINGS`. Throws a `bad_request` HolePunchError for a relay port range
 * the server cannot use.
 */
export function resolveServerSettings(options: Partial<ServerSettings> = {}): ServerSettings {
  const d = DEFAULT_SERVER_SETTINGS;
  const settings: ServerSettings = {
    autostart: options.autostart ?? d.autostart,
    sessionTtlMs: options.sessionTtlMs ?? d.sessionTtlMs,
    maxSessions: options.maxSessions ?? d.maxSessions,
    maxPlayersCap: options.maxPlayersCap ?? d.maxPlayersCap,
    legacy: options.legacy ?? d.legacy,
    relay: options.relay ?? d.relay,
    relayPorts: options.relayPorts ?? d.relayPorts,
    relayLimits: options.relayLimits ?? d.relayLimits,
    sourceLimits: options.sourceLimits ?? d.sourceLimits,
    // Read at each call, not at load: it is a share of the heap limit of this process.
    memoryBudgetBytes: options.memoryBudgetBytes ?? defaultMemoryBudgetBytes(),
    altAddress: options.altAddress ?? d.altAddress,
    altPort: options.altPort ?? d.altPort,
  };
  const problem = relayPortRangeProblem(settings.relayPorts);
  if (problem !== undefined) throw new HolePunchError('bad_request', problem);
  return settings;
}
