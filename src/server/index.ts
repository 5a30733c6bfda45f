// Public face of the rendezvous server. `RendezvousServer` is its sans-IO core (the `Core`
// contract of src/core: replies, relay sockets and lifecycle events are pulled with `poll()`);
// it routes v2 datagrams to `V2Sessions` and the rest to `LegacySessions`, whose endings are
// tables (v2-lifecycle.ts, LEGACY_SESSION_ENDINGS). `startServer` runs it on a `UdpDriver`.
export { countRejection, createCounters, type ServerCounters } from './counters.js';
export type { Outbox, ProtocolHandler } from './handler.js';
export {
  LEGACY_REFUSAL_KINDS,
  LEGACY_SESSION_ENDINGS,
  type LegacyRefusalKind,
  type LegacySessionEnding,
  type LegacySessionSnapshot,
  LegacySessions,
  type LegacySessionsOptions,
} from './legacy-sessions.js';
export type { MemberLifecycleEvent, SessionLifecycleEvent } from './lifecycle.js';
export { LOG_LINES_PER_SECOND, LogLimiter, type LogLimiterOptions } from './log-limit.js';
/** The socket ids of the NAT diagnosis sockets, for a driver that binds them (the simulator). */
export { ALT_ADDRESS_BIT, ALT_PORT_BIT } from './probe.js';
export {
  isMemberEvent,
  RendezvousServer,
  type RendezvousServerOptions,
  type ServerEvent,
} from './rendezvous.js';
export {
  DEFAULT_MAX_SESSIONS,
  DEFAULT_SERVER_SETTINGS,
  resolveServerSettings,
  SESSION_TTL_MS,
  type ServerSettings,
} from './settings.js';
export {
  DEFAULT_METRICS_HOST,
  DEFAULT_PORT,
  type RunningServer,
  SHUTDOWN_DRAIN_MS,
  type StartServerOptions,
  startServer,
} from './shell.js';
export { DEFAULT_MEMORY_BUDGET_SHARE, UNLIMITED_SOURCES } from './source-limits.js';
export {
  lobbyPairs,
  MIN_RELAY_PORT,
  RELAY_BYTES_PER_SECOND,
  RELAY_LOG_INTERVAL_MS,
  RELAY_PACKETS_PER_SECOND,
  RELAY_SOURCE_SHARE,
  type RelayLimits,
  relayPortRangeProblem,
} from './v2-relay.js';
export { V2Sessions, type V2SessionsOptions } from './v2-sessions.js';
