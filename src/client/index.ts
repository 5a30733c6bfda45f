// Public face of the client: the node:dgram shell and the pure cores it drives.
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
} from './client.js';
export {
  type ConfirmedPeer,
  MAX_REFLEXIVE_CANDIDATES,
  PREDICT_AFTER_ROUNDS,
  PREDICT_PORT_RANGE,
  PUNCH_BUDGET_MS,
  PUNCH_INTERVAL_MAX_MS,
  PUNCH_INTERVAL_MS,
  PUNCH_LINGER_MS,
  PunchAttempt,
  type PunchAttemptOptions,
  type PunchCandidate,
  type PunchMessage,
  type PunchPath,
} from './punch.js';
export {
  checkTraversalInput,
  KEEPALIVE_INTERVAL_MS,
  REQUEST_RETRY_FIRST_MS,
  REQUEST_RETRY_MAX_MS,
  SERVER_SILENCE_LIMIT_MS,
  SESSION_WAIT_MS,
  Traversal,
  type TraversalEvent,
  type TraversalOptions,
  type TraversalState,
} from './traversal.js';
