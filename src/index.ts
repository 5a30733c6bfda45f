// The package's public entry (`holepunch-rendezvous`): the client, the server and errors.
// Lower layers have their own subpaths (package.json "exports", documented in
// docs/client.md and docs/server.md):
//   holepunch-rendezvous/client    sans-IO client cores (Traversal, PunchAttempt) and timings
//   holepunch-rendezvous/server    sans-IO server core (RendezvousServer), sessions, counters
//   holepunch-rendezvous/protocol  legacy and v2 codecs
//   holepunch-rendezvous/sim       in-memory network simulator (simulateTraversal, SimNetwork)

export {
  DEFAULT_SERVER,
  HolePunchClient,
  type HolePunchClientEvents,
  type HolePunchClientOptions,
  type HolePunchResult,
  type LobbyUpdateEvent,
  type PunchedPeer,
  type SessionRegisteredEvent,
  type StartTraversalOptions,
} from './client/client.js';
export type { FailedPeer, PeerFailureCause, PunchPath } from './client/punch.js';
export { ERROR_CODES, type ErrorCode, HolePunchError, isErrorCode } from './errors.js';
export type { Endpoint } from './protocol/endpoint.js';
export type { ServerCounters } from './server/counters.js';
export {
  DEFAULT_PORT,
  type RunningServer,
  type StartServerOptions,
  startServer,
} from './server/shell.js';
