// Public face of the rendezvous server: the sans-IO core and the node:dgram shell.
export { countRejection, createCounters, type ServerCounters } from './counters.js';
export type { Outbox, ProtocolHandler } from './handler.js';
export {
  DEFAULT_MAX_SESSIONS,
  LEGACY_REFUSAL_KINDS,
  LEGACY_SESSION_ENDINGS,
  type LegacyRefusalKind,
  type LegacySessionEnding,
  type LegacySessionSnapshot,
  LegacySessions,
  type LegacySessionsOptions,
  SESSION_TTL_MS,
} from './legacy-sessions.js';
export type { MemberLifecycleEvent, SessionLifecycleEvent } from './lifecycle.js';
export { LOG_LINES_PER_SECOND, LogLimiter, type LogLimiterOptions } from './log-limit.js';
export { RendezvousServer, type RendezvousServerOptions } from './rendezvous.js';
export {
  DEFAULT_METRICS_HOST,
  DEFAULT_PORT,
  type RunningServer,
  SHUTDOWN_DRAIN_MS,
  type StartServerOptions,
  startServer,
} from './shell.js';
export { V2Sessions, type V2SessionsOptions } from './v2-sessions.js';
