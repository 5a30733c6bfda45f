// Public face of the client. `Traversal` is the sans-IO core (the `Core` contract of src/core):
// registration, the lobby, the punch (`PunchAttempt`), the relay, and telling game data from
// protocol. `HolePunchClient` runs it on a `UdpDriver` and turns its events into Node events.
export {
  DEFAULT_SERVER,
  HolePunchClient,
  type HolePunchClientEvents,
  type HolePunchClientOptions,
  type HolePunchResult,
  type LobbyUpdateEvent,
  type PathChangedEvent,
  type PunchedPeer,
  type SessionRegisteredEvent,
  type StartTraversalOptions,
} from './client.js';
export {
  type ConfirmedPeer,
  type FailedPeer,
  MAX_REFLEXIVE_CANDIDATES,
  type PeerFailureCause,
  PREDICT_AFTER_ROUNDS,
  PREDICT_PORT_RANGE,
  type PredictMode,
  PUNCH_BUDGET_MS,
  PUNCH_INTERVAL_MAX_MS,
  PUNCH_INTERVAL_MS,
  PUNCH_LINGER_MS,
  PunchAttempt,
  type PunchAttemptOptions,
  type PunchCandidate,
  type PunchMessage,
  type PunchPath,
  SWEEP_EVERY_ROUNDS,
  SWEEP_PORT_RANGE,
} from './punch.js';
export {
  checkTraversalInput,
  KEEPALIVE_INTERVAL_MS,
  RELAY_DELAY_MS,
  REQUEST_RETRY_FIRST_MS,
  REQUEST_RETRY_MAX_MS,
  SEQUENTIAL_RELAY_DELAY_MS,
  SERVER_SILENCE_LIMIT_MS,
  SESSION_WAIT_MS,
  Traversal,
  type TraversalEvent,
  type TraversalOptions,
  type TraversalState,
} from './traversal.js';
