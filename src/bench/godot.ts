/**
 * Time-to-punch of the Godot 4 addon beside the Node client's, on loopback against our server
 * (issue 14, point 5). Each Godot run is the addon's driver game (godot/tests/driver) hosting,
 * in headless Godot 4 in its chroot, and a holepunch-client CLI joining; each Node run is a
 * CLI host and a CLI joiner, on the same server, in the same phase. A run's time is the
 * pair's, measured as the NAT lab's is: from the joiner's startTraversal (the host started
 * earlier and waited for it) to the later of the two `hole_punched`/`punched`. For a Godot
 * host that is its own start_traversal -> hole_punched less the wait for a joiner; it includes
 * the addon's port hand-over (`handover_ms`), reported apart.
 *
 * Godot needs root (chroot); without it the Godot figures carry a reason and the Node runs
 * still go. Every process is killed and every temp project removed before this returns.
 */
import { existsSync } from 'node:fs';
import { CLIENT_CLI_PATH, isCliEvent, toCliLine } from '../cli/index.js';
import {
  GODOT4_DRIVER_DIR,
  type Godot4Project,
  godot4Argv,
  godot4ScriptErrors,
  godot4UnavailableReasons,
  type JsonLine,
  type JsonProcess,
  makeGodot4Project,
  removeGodot4Projects,
  spawnJsonProcess,
  startLoopbackServer,
  withNodeBinary,
} from '../natlab/index.js';
import type { PunchOutcome } from './punch.js';

export interface GodotPunchOutcome {
  /** Godot 4 addon host, Node CLI joiner. */
  readonly godot: PunchOutcome;
  /** The addon's port hand-over of each successful Godot run (ms, ascending). */
  readonly godotHandoverMs: readonly number[];
  /** Node CLI host, Node CLI joiner: the same measurement with no engine. */
  readonly node: PunchOutcome;
}

/** How long a host may take to register (Godot's first start in a project imports it). */
const REGISTER_WAIT_MS = 30_000;
/** A traversal not done by then fails; the clients' own timeout is a little shorter. */
const PUNCH_WAIT_MS = 15_000;
const CLIENT_TIMEOUT_MS = 12_000;
/** A process still alive after this is SIGKILLed by its runner. */
const PROCESS_LIMIT_MS = REGISTER_WAIT_MS + PUNCH_WAIT_MS + 5_000;
/** No new run starts after this long, so a misbehaving engine cannot stretch the benchmark. */
const PHASE_BUDGET_MS = 90_000;

let sessionCounter = 0;

/** The processes of this phase, killed when it ends whatever happened. */
class Children {
  private readonly live = new Set<JsonProcess>();
  spawn(argv: readonly string[], timeoutMs: number): JsonProcess {
    const { process: proc } = spawnJsonProcess(withNodeBinary(argv), timeoutMs);
    this.live.add(proc);
    void proc.exited.then(() => this.live.delete(proc));
    return proc;
  }
  async killAll(): Promise<void> {
    const procs = [...this.live];
    for (const proc of procs) proc.kill();
    await Promise.all(procs.map((proc) => proc.exited));
  }
}

function cliArgv(role: 'host' | 'join', session: string, port: number): string[] {
  const name = `${role}${sessionCounter}`;
  const argv = ['node', CLIENT_CLI_PATH, role, session, '--server', `127.0.0.1:${port}`];
  argv.push('--name', name, '--timeout', String(CLIENT_TIMEOUT_MS), '--json');
  if (role === 'host') argv.push('--max-players', '2');
  return argv;
}

/** When `proc` printed the first line matching `match`, in performance.now() ms. */
function lineAt(
  proc: JsonProcess,
  spawnedAt: number,
  match: (line: JsonLine) => boolean,
): { atMs: number; line: JsonLine } | undefined {
  const index = proc.lines.findIndex(match);
  const offset = proc.lineTimesMs[index];
  const line = proc.lines[index];
  return index < 0 || offset === undefined || line === undefined
    ? undefined
    : { atMs: spawnedAt + offset, line };
}

/** The CLI's punched line: when it came and the joiner's own start (its `elapsedMs` before). */
function cliPunched(
  proc: JsonProcess,
  spawnedAt: number,
): { atMs: number; startedAtMs: number } | undefined {
  const hit = lineAt(proc, spawnedAt, (l) => isCliEvent(l, 'client', 'punched'));
  const parsed = hit === undefined ? undefined : toCliLine('client', hit.line);
  if (hit === undefined || parsed === undefined || !parsed.ok) return undefined;
  if (parsed.line.event !== 'punched') return undefined;
  return { atMs: hit.atMs, startedAtMs: hit.atMs - parsed.line.elapsedMs };
}

const cliEnded = (l: JsonLine): boolean => isCliEvent(l, 'client', 'punched', 'failed');
const godotEnded = (l: JsonLine): boolean =>
  l.godot === 'punched' || l.godot === 'end' || l.signal === 'traversal_failed';

interface RunResult {
  readonly ms: number;
  readonly handoverMs?: number;
}

/**
 * The second half of a run, once the host registered: a CLI joiner, both waited for until
 * they punched or failed, then both stopped.
 */
async function joinAndFinish(
  children: Children,
  host: JsonProcess,
  hostEnded: (line: JsonLine) => boolean,
  session: string,
  port: number,
): Promise<{ join: JsonProcess; joinSpawnedAt: number; hostExit: Awaited<JsonProcess['exited']> }> {
  const joinSpawnedAt = performance.now();
  const join = children.spawn(cliArgv('join', session, port), PROCESS_LIMIT_MS);
  await Promise.all([
    host.waitForLine(hostEnded, PUNCH_WAIT_MS),
    join.waitForLine(cliEnded, PUNCH_WAIT_MS),
  ]);
  host.kill();
  join.kill();
  const [hostExit] = await Promise.all([host.exited, join.exited]);
  return { join, joinSpawnedAt, hostExit };
}

/** One Godot host + CLI joiner run; undefined when either did not punch. */
async function godotRun(
  children: Children,
  project: Godot4Project,
  port: number,
): Promise<RunResult | undefined> {
  const session = `benchgodot${process.pid}x${++sessionCounter}`;
  const config = {
    server: '127.0.0.1',
    port,
    session,
    host: true,
    name: `ghost${sessionCounter}`,
    max_players: 2,
    after: 'none',
    timeout_ms: CLIENT_TIMEOUT_MS,
    deadline_ms: REGISTER_WAIT_MS + PUNCH_WAIT_MS,
  };
  const hostSpawnedAt = performance.now();
  const host = children.spawn(
    godot4Argv(project, { HP_DRIVER: JSON.stringify(config) }),
    PROCESS_LIMIT_MS,
  );
  const registered = await host.waitForLine(
    (l) => l.signal === 'session_registered' || godotEnded(l),
    REGISTER_WAIT_MS,
  );
  if (registered?.signal !== 'session_registered') return undefined;
  const { join, joinSpawnedAt, hostExit } = await joinAndFinish(
    children,
    host,
    godotEnded,
    session,
    port,
  );
  const errors = godot4ScriptErrors(hostExit.stderr);
  if (errors.length > 0) throw new Error(`GDScript errors: ${errors.join('; ')}`);
  const hostPunched = lineAt(host, hostSpawnedAt, (l) => l.godot === 'punched');
  const joinPunched = cliPunched(join, joinSpawnedAt);
  if (hostPunched === undefined || joinPunched === undefined) return undefined;
  const result = hostPunched.line.result as { handover_ms?: unknown } | undefined;
  const handover = typeof result?.handover_ms === 'number' ? result.handover_ms : undefined;
  return {
    ms: Math.max(hostPunched.atMs, joinPunched.atMs) - joinPunched.startedAtMs,
    ...(handover === undefined ? {} : { handoverMs: handover }),
  };
}

/** One CLI host + CLI joiner run; undefined when either did not punch. */
async function nodeRun(children: Children, port: number): Promise<RunResult | undefined> {
  const session = `benchnode${process.pid}x${++sessionCounter}`;
  const hostSpawnedAt = performance.now();
  const host = children.spawn(cliArgv('host', session, port), PROCESS_LIMIT_MS);
  const registered = await host.waitForLine(
    (l) => isCliEvent(l, 'client', 'registered', 'failed'),
    REGISTER_WAIT_MS,
  );
  if (registered === undefined || !isCliEvent(registered, 'client', 'registered')) {
    return undefined;
  }
  const { join, joinSpawnedAt } = await joinAndFinish(children, host, cliEnded, session, port);
  const hostPunched = cliPunched(host, hostSpawnedAt);
  const joinPunched = cliPunched(join, joinSpawnedAt);
  if (hostPunched === undefined || joinPunched === undefined) return undefined;
  return { ms: Math.max(hostPunched.atMs, joinPunched.atMs) - joinPunched.startedAtMs };
}

interface Tally {
  readonly timesMs: number[];
  readonly handoverMs: number[];
  runs: number;
  failures: number;
}

const newTally = (): Tally => ({ timesMs: [], handoverMs: [], runs: 0, failures: 0 });

function record(tally: Tally, result: RunResult | undefined): void {
  tally.runs++;
  if (result === undefined) {
    tally.failures++;
    return;
  }
  tally.timesMs.push(result.ms);
  if (result.handoverMs !== undefined) tally.handoverMs.push(result.handoverMs);
}

function outcome(tally: Tally): PunchOutcome {
  const timesMs = [...tally.timesMs].sort((a, b) => a - b);
  return { ok: true, figures: { timesMs, runs: tally.runs, failures: tally.failures } };
}

/**
 * `runs` Godot runs and `runs` Node runs on one loopback server, alternating (Godot, Node,
 * Godot, ...) so that a drift in the machine's load weighs on both alike.
 */
export async function measureGodotPunch(runs: number): Promise<GodotPunchOutcome> {
  const reasons = godot4UnavailableReasons();
  if (!existsSync(GODOT4_DRIVER_DIR)) reasons.push(`no driver game at ${GODOT4_DRIVER_DIR}`);
  const godotReason = reasons.length > 0 ? `Godot 4 unavailable: ${reasons.join('; ')}` : undefined;
  const children = new Children();
  const godot = newTally();
  const node = newTally();
  let failure: string | undefined;
  try {
    const server = await startLoopbackServer((argv, ms) => children.spawn(argv, ms), {
      lifetimeMs: PHASE_BUDGET_MS + PROCESS_LIMIT_MS * 2,
    });
    const project =
      godotReason === undefined
        ? await makeGodot4Project('bench', { from: GODOT4_DRIVER_DIR })
        : undefined;
    const deadline = performance.now() + PHASE_BUDGET_MS;
    for (let i = 0; i < runs && performance.now() < deadline; i++) {
      if (project !== undefined) record(godot, await godotRun(children, project, server.port));
      record(node, await nodeRun(children, server.port));
    }
  } catch (error) {
    failure = `Godot phase failed: ${(error as Error).message}`;
  } finally {
    await children.killAll();
    await removeGodot4Projects();
  }
  const godotMissing = godotReason ?? failure;
  return {
    godot: godotMissing === undefined ? outcome(godot) : { ok: false, reason: godotMissing },
    godotHandoverMs: [...godot.handoverMs].sort((a, b) => a - b),
    node: failure !== undefined && node.runs === 0 ? { ok: false, reason: failure } : outcome(node),
  };
}
