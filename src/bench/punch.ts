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
}

/** The two sites of the lab pair: one host each, both behind a port-restricted cone NAT. */
const LAB_HOST_SITE = 'pr-host';
const LAB_JOIN_SITE = 'pr-join';
/** How long the host may take to print `registered`. */
const LAB_REGISTER_WAIT_MS = 15_000;
/** A client process still running after this long is killed and the run counts as failed. */
const LAB_PROCESS_LIMIT_MS = 15_000;
/** No new lab run starts after this long, so a misbehaving lab cannot stretch the benchmark. */
const LAB_PHASE_BUDGET_MS = 60_000;

let labSessionCounter = 0;

function labClientArgv(
  client: ClientKind,
  role: 'host' | 'join',
  session: string,
  server: string,
): string[] {
  const name = `${role}${labSessionCounter}`;
  const cli = client === 'legacy' ? LEGACY_CLIENT_CLI_PATH : CLIENT_CLI_PATH;
  const argv = ['node', cli, role, session, '--server', server, '--name', name, '--nickname', name];
  // The legacy CLI takes MAX on both sides (its joiners send it nowhere); v2 on the host only.
  if (client === 'legacy' || role === 'host') argv.push('--max-players', '2');
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

/**
 * One traversal between the pair. The joiner starts once the host is registered (a join
 * before the session exists is refused), so "both started" is the joiner's startTraversal:
 * its `punched` line minus the `elapsedMs` it reports (process start-up is not counted).
 * The time is from there to the later of the two `punched` lines.
 */
async function labTrial(lab: Lab, client: ClientKind, server: string): Promise<number | undefined> {
  labSessionCounter++;
  const session = `bench${process.pid}x${labSessionCounter}`;
  // Legacy clients bind a fixed port: start each run with no NAT state left from the last.
  await lab.flushConntrack(LAB_HOST_SITE);
  await lab.flushConntrack(LAB_JOIN_SITE);
  const hostSpawnedAt = performance.now();
  const host = lab.spawn(LAB_HOST_SITE, labClientArgv(client, 'host', session, server), {
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
  const join = lab.spawn(LAB_JOIN_SITE, labClientArgv(client, 'join', session, server), {
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
  return Math.max(hostPunched.atMs, joinPunched.atMs) - bothStartedAt;
}

async function labTrials(
  lab: Lab,
  client: ClientKind,
  runs: number,
  server: string,
  deadline: number,
): Promise<PunchOutcome> {
  const timesMs: number[] = [];
  let failures = 0;
  let started = 0;
  for (; started < runs && performance.now() < deadline; started++) {
    const time = await labTrial(lab, client, server);
    if (time === undefined) failures++;
    else timesMs.push(time);
  }
  timesMs.sort((a, b) => a - b);
  return { ok: true, figures: { timesMs, runs: started, failures } };
}

/**
 * Time-to-punch in the NAT lab for a port-restricted pair: our v2 client, then the legacy
 * client with the original's timings (2 s join delay, 100 ms greet steps) on the same pair and
 * the same server. Needs root with ip/iptables; otherwise both figures are unavailable.
 */
export async function measureLabPunch(
  v2Runs: number,
  legacyRuns: number,
): Promise<LabPunchOutcome> {
  const reasons = await labUnavailableReasons();
  if (reasons.length > 0) {
    const reason = `NAT lab unavailable: ${reasons.join('; ')}`;
    return { v2: { ok: false, reason }, legacy: { ok: false, reason } };
  }
  try {
    return await withLab(
      {
        sites: [
          { name: LAB_HOST_SITE, nat: 'port-restricted' },
          { name: LAB_JOIN_SITE, nat: 'port-restricted' },
        ],
      },
      async (lab) => {
        await lab.startServer();
        const server = `${SERVER_ADDRESS}:${lab.serverPort ?? DEFAULT_SERVER_PORT}`;
        const deadline = performance.now() + LAB_PHASE_BUDGET_MS;
        // The legacy runs are few and slow (2 s join delay): keep them a share of the budget.
        const v2 = await labTrials(lab, 'v2', v2Runs, server, deadline - LAB_PHASE_BUDGET_MS / 3);
        const legacy = await labTrials(lab, 'legacy', legacyRuns, server, deadline);
        return { v2, legacy };
      },
    );
  } catch (error) {
    const reason = `NAT lab failed: ${(error as Error).message}`;
    return { v2: { ok: false, reason }, legacy: { ok: false, reason } };
  }
}
