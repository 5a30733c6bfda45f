// A client of the original HolePunch plugin's protocol (seed PROTOCOL.md), used by the NAT
// lab and the benchmarks to prove that games with the original plugin get through our server.
// Its wire format lives in src/protocol/legacy-client.ts; `LegacyClientState` is a sans-IO core
// (the `Core` contract of src/core) and `LegacyClient` runs it on a `UdpDriver`.
export { exchangeGameDatagrams, type GameCheckResult } from './game-check.js';
export { LegacyClient, type LegacyClientOptions, type LegacyPunchResult } from './shell.js';
export {
  CASCADE_HALF_WIDTH,
  DEFAULT_LEGACY_REVISION,
  GOS_FOR_SUCCESS,
  GREETS_BEFORE_CASCADE,
  JOINER_DELAY_MS,
  LEGACY_REVISIONS,
  type LegacyClientConfig,
  type LegacyClientEvent,
  LegacyClientState,
  type LegacyClientWork,
  type LegacyFailureReason,
  type LegacyPunchedPeer,
  type LegacyRevision,
  PEER_TICK_MS,
  PLUGIN_PUNCH_BUDGET_MS,
  REGISTER_DELAY_MS,
} from './state.js';
