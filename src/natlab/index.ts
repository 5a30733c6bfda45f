/**
 * The NAT lab: real Linux NATs built from network namespaces, veth pairs and iptables, to
 * prove hole punching end to end (issue 5). Needs root, `ip` and `iptables`.
 *
 * Programmatic use (benchmarks, tests):
 *
 *   import { withLab, runTrial } from './natlab/index.js';
 *   await withLab(
 *     { sites: [{ name: 'a', nat: 'port-restricted' }, { name: 'b', nat: 'port-restricted', loss: 0.1 }] },
 *     async (lab) => {
 *       await lab.startServer();                       // holepunch-server on 203.0.113.10:4000
 *       const host = lab.spawn('a', ['node', CLIENT_CLI_PATH, 'host', 's1', '--server', '203.0.113.10:4000', '--json']);
 *       await host.waitForLine((l) => l.event === 'registered', 10_000);
 *       const join = await lab.run('b', ['node', CLIENT_CLI_PATH, 'join', 's1', '--server', '203.0.113.10:4000', '--json']);
 *       join.lines;                                    // every JSON line the joiner printed
 *       // or all of the above, judged: await runTrial(lab, 'v2' | 'legacy', pair, loss, trialIndex)
 *     },
 *   );
 *
 * `withLab` builds the topology, probes every NAT (throws `nat_misbehaved` if one does not
 * behave as its type), runs `fn`, and always tears down: on return, throw, exit, SIGINT and
 * SIGTERM. Host names are site names (`a`), `a/1` for a site's second host, and `server`.
 */
import { createLab, type Lab, type LabSpec } from './lab.js';

// The programs a lab runs, for callers that built their argv before the paths moved to cli/.
export { CLIENT_CLI_PATH, LEGACY_CLIENT_CLI_PATH, SERVER_CLI_PATH } from '../cli/index.js';
export {
  DEFAULT_SERVER_PORT,
  OBSERVER_ADDRESSES,
  SERVER_ADDRESS,
  SERVER_ALT_ADDRESS,
} from './addresses.js';
export { mustRun, runCommand } from './command.js';
export {
  GODOT4_ADDON_DIR,
  GODOT4_DRIVER_DIR,
  GODOT4_ROOT,
  type Godot4Project,
  godot4Argv,
  godot4EngineErrors,
  godot4ImportArgv,
  godot4ScriptErrors,
  godot4UnavailableReasons,
  makeGodot4Project,
  REPO_ROOT,
  removeGodot4Projects,
} from './godot4.js';
export {
  type JsonLine,
  type JsonProcess,
  type ProcessResult,
  spawnJsonProcess,
  withNodeBinary,
} from './json-process.js';
export {
  createLab,
  killNamespaceProcesses,
  LAB_PREFIX,
  Lab,
  type LabHost,
  type LabProcess,
  type LabSite,
  type LabSpec,
  MAX_HOSTS_PER_SITE,
  MAX_SITES,
  SERVER_WITH_ALT_ADDRESS_ARGS,
  type SiteSpec,
} from './lab.js';
export { labNamespaces, removeLeftovers } from './leftovers.js';
export { type SpawnJson, startLoopbackServer } from './loopback.js';
export {
  ACCEPTING_BIRTHDAY_PAIR,
  CLIENT_KINDS,
  type ClientKind,
  DEFAULT_LOSS_LEVELS,
  expectationFor,
  formatMatrix,
  type MatrixOptions,
  type MatrixPair,
  type MatrixReport,
  matrixLabSpec,
  matrixPairs,
  type PairSummary,
  RESULTS_DIR,
  runMatrix,
  runTrial,
  summarize,
  type TrialResult,
  writeResults,
} from './matrix.js';
export {
  expectPair,
  type Filtering,
  isNatType,
  MATRIX_NAT_TYPES,
  type Mapping,
  NAT_BEHAVIOUR,
  NAT_TYPES,
  type NatBehaviour,
  type NatType,
  type PairExpectation,
} from './nat-types.js';
export { assertLabCapable, labUnavailableReasons } from './preflight.js';
export { formatVerdicts, type SiteVerdict } from './probe.js';

/** Builds a lab, runs `fn` with it, and tears it down whatever happens. */
export async function withLab<T>(spec: LabSpec, fn: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = await createLab(spec);
  try {
    return await fn(lab);
  } finally {
    await lab.destroy();
  }
}
