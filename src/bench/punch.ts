/**
 * Time-to-punch: the simulated traversal (virtual time, real cores) and the NAT lab runs
 * (real processes in network namespaces). Each returns `undefined` figures with a reason when
 * it cannot run here, so the benchmark still completes.
 */
import {
  CLIENT_CLI_PATH,
  type CliEvent,
  isCliEvent,
  LEGACY_CLIENT_CLI_PATH,
  toCliLine,
} from '../cli/index.js';
import {
  type ClientKind,
  DEFAULT_SERVER_PORT,
  type Lab,
  type LabProcess,
  labUnavailableReasons,
  SERVER_ADDRESS,
  withLab,
} from '../natlab/index.js';
import { simulateTraversal } from '../sim/index.js';

export interface PunchFigures {
  /** Successful runs' times, ascending, ms. */
  readonly timesMs: readonly number[];
  readonly runs: number;
  readonly failures: number;
}

export type PunchOutcome =
  | { readonly ok: true; readonly figures: PunchFigures }
  | { readonly ok: false; readonly reason: string };

/** The simulated network of issue 6: every link 20 ms one way (RTT to the server 40 ms). */
export const SIM_ONE_WAY_DELAY_MS = 20;
/** Loss on every datagram, both directions. */
export const SIM_LOSS_RATE = 0.05;

/**
 * `runs` traversals of a port-restricted pair, one seed each (so losses fall differently),
 * in virtual time: the time of a run is when the later of the two clients punched, measured
 * from both starting together.
 */
export async function measureSimPunch(runs: number): Promise<PunchOutcome> {
  const timesMs: number[] = [];
  let failures = 0;
  for (let seed = 1; seed <= runs; seed++) {
    const result = simulateTraversal({
      players: 2,
      natA: 'port-restricted',
      natB: 'port-restricted',
      oneWayDelayMs: SIM_ONE_WAY_DELAY_MS,
      lossRate: SIM_LOSS_RATE,
      seed,
    });
    if (result.ok) timesMs.push(result.elapsedMs);
    else failures++;
  }
  timesMs.sort((a, b) => a - b);
  return { ok: true, figures: { timesMs, runs, failures } };
}

export interface LabPunchOutcome {
  readonly v2: PunchOutcome;
  readonly legacy: PunchOutcome;
  /** Port-restricted host, random-port (`symmetric`) joiner, `--no-relay`: birthday probing. */
  readonly birthday: HardPairOutcome;
  /** Two random-port sides, relay allowed: the pair no direct strategy reaches. */
  readonly relay: HardPairOutcome;
}

/** A hard-NAT pair's runs: times as in PunchFigures, plus the paths the clients reported. */
export interface HardPairFigures extends PunchFigures {
  /** Runs in which both sides punched and neither reported `relay`. */
  readonly direct: number;
  /** Successful runs per `hostPath/joinPath` (e.g. `reflexive/birthday`, `relay/relay`). */
  readonly paths: Readonly<Record<string, number>>;
  /**
   * Successful runs' times from the joiner's process spawn (Node start-up and registration
   * included, as the lab matrix counts them), ascending, ms.
   */
  readonly fromSpawnMs: readonly number[];
}

export type HardPairOutcome =
  | { readonly ok: true; readonly figures: HardPairFigures }
  | { readonly ok: false; readonly reason: string };

/** The sites of the lab: a port-restricted pair and two random-port (`symmetric`) sites. */
const LAB_HOST_SITE = 'pr-host';
const LAB_JOIN_SITE = 'pr-join';
const LAB_SYM_A_SITE = 'sym-a';
const LAB_SYM_B_SITE = 'sym-b';
/** How long the host may take to print `registered`. */
const LAB_REGISTER_WAIT_MS = 15_000;
/** A client process still running after this long is killed and the run counts as failed. */
const LAB_PROCESS_LIMIT_MS = 15_000;
/** No new lab run starts after this long, so a misbehaving lab cannot stretch the benchmark. */
const LAB_PHASE_BUDGET_MS = 60_000;
/**
 * The same for the two hard-NAT pairs together, half each. A birthday run takes ~1-3 s (a
 * failed one up to the punch's ~8 s give-up), a relay run ~1-2 s: 10 runs each fit with room.
 */
const LAB_HARD_BUDGET_MS = 90_000;

let labSessionCounter = 0;

function labClientArgv(
  client: ClientKind,
  role: 'host' | 'join',
  session: string,
  server: string,
  noRelay: boolean,
): string[] {
  const name = `${role}${labSessionCounter}`;
  const cli = client === 'legacy' ? LEGACY_CLIENT_CLI_PATH : CLIENT_CLI_PATH;
  const argv = ['node', cli, role, session, '--server', server, '--name', name, '--nickname', name];
  // The legacy CLI takes MAX on both sides (its joiners send it nowhere); v2 on the host only.
  if (client === 'legacy' || role === 'host') argv.push('--max-players', '2');
  // v2 relays by default; a figure that claims "direct" passes --no-relay so it must be.
  if (noRelay && client === 'v2') argv.push('--no-relay');
  argv.push('--json');
  return argv;
}

type ClientLines = 'client' | 'legacy-client';
const linesOf = (client: ClientKind): ClientLines =>
  client === 'legacy' ? 'legacy-client' : 'client';

/** When a client printed its `punched` line, in performance.now() ms, and the line. */
function punchedAt(
  proc: LabProcess,
  cli: ClientLines,
  spawnedAt: number,
): { atMs: number; line: CliEvent<ClientLines, 'punched'> } | undefined {
  const index = proc.lines.findIndex((line) => isCliEvent(line, cli, 'punched'));
  const offset = proc.lineTimesMs[index];
  const parsed = toCliLine(cli, proc.lines[index]);
  return index < 0 || offset === undefined || !parsed.ok || parsed.line.event !== 'punched'
    ? undefined
    : { atMs: spawnedAt + offset, line: parsed.line };
}

/** The path a `punched` line reports for its (only) peer; the legacy CLI reports none. */
function pathOf(line: CliEvent<ClientLines, 'punched'>): string {
  const peer: object | undefined = line.peers[0];
  return peer !== undefined && 'path' in peer && typeof peer.path === 'string' ? peer.path : '?';
}

/** Which pair of sites a run uses, with which client, and whether v2 may relay. */
interface LabPair {
  readonly hostSite: string;
  readonly joinSite: string;
  readonly client: ClientKind;
  readonly noRelay: boolean;
}

interface LabRun {
  readonly timeMs: number;
  readonly fromSpawnMs: number;
  readonly hostPath: string;
  readonly joinPath: string;
}

/**
 * One traversal between the pair. The joiner starts once the host is registered (a join
 * before the session exists is refused), so "both started" is the joiner's startTraversal:
 * its `punched` line minus the `elapsedMs` it reports (process start-up is not counted).
 * The time is from there to the later of the two `punched` lines.
 */
async function labTrial(lab: Lab, pair: LabPair, server: string): Promise<LabRun | undefined> {
  labSessionCounter++;
  const { client, hostSite, joinSite, noRelay } = pair;
  const session = `bench${process.pid}x${labSessionCounter}`;
  // Legacy clients bind a fixed port: start each run with no NAT state left from the last.
  await lab.flushConntrack(hostSite);
  await lab.flushConntrack(joinSite);
  const hostSpawnedAt = performance.now();
  const host = lab.spawn(hostSite, labClientArgv(client, 'host', session, server, noRelay), {
    timeoutMs: LAB_PROCESS_LIMIT_MS,
  });
  const cli = linesOf(client);
  const registered = await host.waitForLine(
    (line) => isCliEvent(line, cli, 'registered', 'failed'),
    LAB_REGISTER_WAIT_MS,
  );
  if (registered === undefined || !isCliEvent(registered, cli, 'registered')) {
    host.kill();
    await host.exited;
    return undefined;
  }
  const joinSpawnedAt = performance.now();
  const join = lab.spawn(joinSite, labClientArgv(client, 'join', session, server, noRelay), {
    timeoutMs: LAB_PROCESS_LIMIT_MS,
  });
  // Only the `punched` lines matter here: stop the clients' game-datagram test after them.
  const ended = (line: unknown): boolean => isCliEvent(line, cli, 'punched', 'failed');
  await Promise.all([
    host.waitForLine(ended, LAB_PROCESS_LIMIT_MS),
    join.waitForLine(ended, LAB_PROCESS_LIMIT_MS),
  ]);
  host.kill();
  join.kill();
  await Promise.all([host.exited, join.exited]);
  const hostPunched = punchedAt(host, cli, hostSpawnedAt);
  const joinPunched = punchedAt(join, cli, joinSpawnedAt);
  if (hostPunched === undefined || joinPunched === undefined) return undefined;
  const bothStartedAt = joinPunched.atMs - joinPunched.line.elapsedMs;
  return {
    timeMs: Math.max(hostPunched.atMs, joinPunched.atMs) - bothStartedAt,
    fromSpawnMs: Math.max(hostPunched.atMs, joinPunched.atMs) - joinSpawnedAt,
    hostPath: pathOf(hostPunched.line),
    joinPath: pathOf(joinPunched.line),
  };
}

/** Up to `runs` runs of the pair, none started after `deadline` (performance.now() ms). */
async function labTrials(
  lab: Lab,
  pair: LabPair,
  runs: number,
  server: string,
  deadline: number,
): Promise<HardPairFigures> {
  const timesMs: number[] = [];
  const fromSpawnMs: number[] = [];
  const paths: Record<string, number> = {};
  let failures = 0;
  let direct = 0;
  let started = 0;
  for (; started < runs && performance.now() < deadline; started++) {
    const run = await labTrial(lab, pair, server);
    if (run === undefined) {
      failures++;
      continue;
    }
    timesMs.push(run.timeMs);
    fromSpawnMs.push(run.fromSpawnMs);
    const key = `${run.hostPath}/${run.joinPath}`;
    paths[key] = (paths[key] ?? 0) + 1;
    if (run.hostPath !== 'relay' && run.joinPath !== 'relay') direct++;
  }
  timesMs.sort((a, b) => a - b);
  fromSpawnMs.sort((a, b) => a - b);
  return { timesMs, runs: started, failures, direct, paths, fromSpawnMs };
}

export interface LabPunchRuns {
  /** v2 and legacy runs of the port-restricted pair. */
  readonly v2: number;
  readonly legacy: number;
  /** Runs of each hard-NAT pair (birthday, relay-only). */
  readonly hard: number;
}

/**
 * Time-to-punch in the NAT lab. A port-restricted pair: our v2 client, then the legacy client
 * with the original's timings (2 s join delay, 100 ms greet steps) on the same pair and the
 * same server. Then the hard-NAT pairs of issue #13 in the same lab: a port-restricted host
 * with a random-port joiner and the relay off (direct only through birthday probing), and two
 * random-port sides with the relay on (time to connect through it). Needs root with
 * ip/iptables; otherwise every figure is unavailable.
 */
export async function measureLabPunch(runs: LabPunchRuns): Promise<LabPunchOutcome> {
  const reasons = await labUnavailableReasons();
  if (reasons.length > 0) {
    const reason = `NAT lab unavailable: ${reasons.join('; ')}`;
    const no = { ok: false as const, reason };
    return { v2: no, legacy: no, birthday: no, relay: no };
  }
  const skipped = { ok: false as const, reason: 'not run (0 runs planned)' };
  const outcome = <F extends PunchFigures>(planned: number, figures: F) =>
    planned > 0 ? { ok: true as const, figures } : skipped;
  try {
    return await withLab(
      {
        sites: [
          { name: LAB_HOST_SITE, nat: 'port-restricted' },
          { name: LAB_JOIN_SITE, nat: 'port-restricted' },
          { name: LAB_SYM_A_SITE, nat: 'symmetric' },
          { name: LAB_SYM_B_SITE, nat: 'symmetric' },
        ],
      },
      async (lab) => {
        await lab.startServer();
        const server = `${SERVER_ADDRESS}:${lab.serverPort ?? DEFAULT_SERVER_PORT}`;
        const pr = { hostSite: LAB_HOST_SITE, joinSite: LAB_JOIN_SITE, noRelay: false };
        const deadline = performance.now() + LAB_PHASE_BUDGET_MS;
        // The legacy runs are few and slow (2 s join delay): keep them a share of the budget.
        const v2 = await labTrials(
          lab,
          { ...pr, client: 'v2' },
          runs.v2,
          server,
          deadline - LAB_PHASE_BUDGET_MS / 3,
        );
        const legacy = await labTrials(
          lab,
          { ...pr, client: 'legacy' },
          runs.legacy,
          server,
          deadline,
        );
        const hardDeadline = performance.now() + LAB_HARD_BUDGET_MS;
        const birthday = await labTrials(
          lab,
          { hostSite: LAB_HOST_SITE, joinSite: LAB_SYM_A_SITE, client: 'v2', noRelay: true },
          runs.hard,
          server,
          hardDeadline - LAB_HARD_BUDGET_MS / 2,
        );
        const relay = await labTrials(
          lab,
          { hostSite: LAB_SYM_A_SITE, joinSite: LAB_SYM_B_SITE, client: 'v2', noRelay: false },
          runs.hard,
          server,
          hardDeadline,
        );
        return {
          v2: outcome(runs.v2, v2),
          legacy: outcome(runs.legacy, legacy),
          birthday: outcome(runs.hard, birthday),
          relay: outcome(runs.hard, relay),
        };
      },
    );
  } catch (error) {
    const reason = `NAT lab failed: ${(error as Error).message}`;
    const no = { ok: false as const, reason };
    return { v2: no, legacy: no, birthday: no, relay: no };
  }
}
