/**
 * The benchmark of issue 6 (`npm run bench`; method and a sample run in docs/performance.md):
 * complete legacy lobbies against the server and a same-I/O echo reference, idle-session
 * memory, time-to-punch in the simulator and the NAT lab, and the Godot 4 addon's beside the
 * Node client's on loopback.
 *
 *   import { FULL_PLAN, runBench } from './bench/index.js';
 *   const { table, json } = await runBench(FULL_PLAN);  // json: the fields of the last line
 *
 * The entry point with flags (`--smoke`, `--profile`) is `run.ts`.
 */
export { type BenchPlan, type BenchResult, FULL_PLAN, runBench, SMOKE_PLAN } from './bench.js';
export { encodeEchoRequest } from './echo-plan.js';
export { type LoadResult, openIdleSessions, runClosedLoop } from './lobby-load.js';
export {
  echoLobbySteps,
  type LobbySpec,
  type LobbyStep,
  serverLobbySteps,
} from './lobby-script.js';
export { type ProfileSummary, summariseProfile } from './profile.js';
