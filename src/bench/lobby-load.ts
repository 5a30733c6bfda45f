/**
 * The load generator: drives complete legacy lobbies (rs, rc per member, autostart → peers)
 * over many UDP sockets, closed-loop. Each of `concurrency` slots owns one socket per member and
 * runs one lobby at a time; a step's request goes out only after every reply of the previous
 * step arrived and matched byte for byte. The same slots, pattern and window drive the echo
 * reference, so both see the same offered load and do the same datagram I/O per request.
 */
import dgram from 'node:dgram';
import {
  echoLobbySteps,
  type LobbySpec,
  type LobbyStep,
  serverLobbySteps,
} from './lobby-script.js';

export type LoadMode = 'server' | 'echo';

export interface LoadTarget {
  readonly mode: LoadMode;
  readonly address: string;
  readonly port: number;
}

/** A lobby step with no complete answer after this long counts as failed. */
export const STEP_TIMEOUT_MS = 1000;
/** How often in-flight steps are checked against `STEP_TIMEOUT_MS`. */
const TIMEOUT_SCAN_INTERVAL_MS = 100;
/** After the window closes, in-flight lobbies get this long to finish before sockets close. */
const DRAIN_LIMIT_MS = 1500;
/** The load generator's sockets bind here; the server sees this as every member's address. */
export const LOAD_ADDRESS = '127.0.0.1';

/** What happened inside the measurement window. */
export interface WindowCounts {
  requestsSent: number;
  repliesVerified: number;
  lobbiesCompleted: number;
  lobbiesFailed: number;
  /** Replies that arrived but differed from what the protocol requires. */
  verifyFailures: number;
  /** Steps that got no complete answer within STEP_TIMEOUT_MS. */
  timeouts: number;
}

export interface LoadResult extends WindowCounts {
  readonly windowMs: number;
  /** Request-to-first-reply latencies inside the window, ascending, in ms. */
  readonly latenciesMs: Float64Array;
  /** The load generator's own CPU (user + system) inside the window, µs. */
  readonly loadCpuUs: number;
}

interface MemberSocket {
  readonly socket: dgram.Socket;
  readonly port: number;
  readonly member: number;
  lobby: LobbyRun | undefined;
}

function newCounts(): WindowCounts {
  return {
    requestsSent: 0,
    repliesVerified: 0,
    lobbiesCompleted: 0,
    lobbiesFailed: 0,
    verifyFailures: 0,
    timeouts: 0,
  };
}

async function bindMember(address: string, member: number): Promise<MemberSocket> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, address, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  const holder: MemberSocket = { socket, port: socket.address().port, member, lobby: undefined };
  socket.on('message', (msg) => holder.lobby?.onReply(holder.member, msg));
  // A late ICMP error or a closed peer must not crash the benchmark; timeouts account for it.
  socket.on('error', () => {});
  return holder;
}

function closeMember(holder: MemberSocket): Promise<void> {
  holder.lobby = undefined;
  return new Promise((resolve) => {
    try {
      holder.socket.close(() => resolve());
    } catch {
      resolve();
    }
  });
}

/** Shared by every lobby of one load run: where the counts go and when the window is open. */
class LoadRecorder {
  counting = false;
  counts: WindowCounts = newCounts();
  latencies: number[] = [];
}

type LobbyDone = (run: LobbyRun, ok: boolean) => void;

/** One lobby in flight on one slot's sockets. */
class LobbyRun {
  readonly #members: readonly MemberSocket[];
  readonly #steps: readonly LobbyStep[];
  readonly #recorder: LoadRecorder;
  readonly #target: LoadTarget;
  readonly #done: LobbyDone;
  #stepIndex = 0;
  #positions: number[];
  #remaining = 0;
  #awaitingFirstReply = false;
  #finished = false;
  sentAtMs = 0;

  constructor(
    members: readonly MemberSocket[],
    steps: readonly LobbyStep[],
    recorder: LoadRecorder,
    target: LoadTarget,
    done: LobbyDone,
  ) {
    this.#members = members;
    this.#steps = steps;
    this.#recorder = recorder;
    this.#target = target;
    this.#done = done;
    this.#positions = new Array<number>(members.length).fill(0);
    for (const member of members) member.lobby = this;
  }

  get finished(): boolean {
    return this.#finished;
  }

  start(): void {
    this.#sendStep();
  }

  #sendStep(): void {
    const step = this.#steps[this.#stepIndex] as LobbyStep;
    this.#positions.fill(0);
    this.#remaining = step.replies;
    this.#awaitingFirstReply = true;
    this.sentAtMs = performance.now();
    const sender = this.#members[step.from] as MemberSocket;
    sender.socket.send(step.request, this.#target.port, this.#target.address);
    if (this.#recorder.counting) this.#recorder.counts.requestsSent++;
  }

  onReply(member: number, msg: Buffer): void {
    if (this.#finished) return;
    const step = this.#steps[this.#stepIndex] as LobbyStep;
    const queue = step.expect[member] as readonly (string | number)[];
    const position = this.#positions[member] as number;
    const expected = queue[position];
    const matches =
      typeof expected === 'number'
        ? msg.length === expected
        : expected !== undefined && msg.toString('latin1') === expected;
    if (!matches) {
      if (this.#recorder.counting) this.#recorder.counts.verifyFailures++;
      this.fail();
      return;
    }
    this.#positions[member] = position + 1;
    const recorder = this.#recorder;
    if (recorder.counting) {
      recorder.counts.repliesVerified++;
      if (this.#awaitingFirstReply && member === step.from) {
        recorder.latencies.push(performance.now() - this.sentAtMs);
      }
    }
    if (member === step.from) this.#awaitingFirstReply = false;
    if (--this.#remaining > 0) return;
    if (++this.#stepIndex < this.#steps.length) {
      this.#sendStep();
      return;
    }
    this.#finish(true);
  }

  fail(): void {
    if (this.#finished) return;
    if (this.#recorder.counting) this.#recorder.counts.lobbiesFailed++;
    this.#finish(false);
  }

  #finish(ok: boolean): void {
    this.#finished = true;
    for (const member of this.#members) if (member.lobby === this) member.lobby = undefined;
    if (ok && this.#recorder.counting) this.#recorder.counts.lobbiesCompleted++;
    this.#done(this, ok);
  }
}

export interface ClosedLoopOptions {
  readonly target: LoadTarget;
  readonly players: number;
  /** Lobbies in flight at once; each needs `players` sockets. */
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  /** Lobby ids start here; give each run its own range so keys never repeat in one server. */
  readonly firstLobbyId: number;
  /** Called at the instant the window opens and closes (snapshot server CPU there). */
  readonly onWindowOpen?: () => void;
  readonly onWindowClose?: () => void;
}

function stepsFor(target: LoadTarget, spec: LobbySpec): LobbyStep[] {
  return target.mode === 'server' ? serverLobbySteps(spec) : echoLobbySteps(spec);
}

function sortedLatencies(samples: number[]): Float64Array {
  const sorted = Float64Array.from(samples);
  sorted.sort();
  return sorted;
}

/** Runs complete lobbies back to back on every slot for warmup + measure, then drains. */
export async function runClosedLoop(options: ClosedLoopOptions): Promise<LoadResult> {
  const { target, players, concurrency } = options;
  const recorder = new LoadRecorder();
  const slots: MemberSocket[][] = [];
  for (let s = 0; s < concurrency; s++) {
    slots.push(
      await Promise.all(Array.from({ length: players }, (_, m) => bindMember(LOAD_ADDRESS, m))),
    );
  }
  const inFlight = new Set<LobbyRun>();
  let nextId = options.firstLobbyId;
  let stopping = false;
  let pendingRebinds = 0;
  let drained: (() => void) | undefined;

  const startOn = (slot: number): void => {
    if (stopping) return;
    const members = slots[slot] as MemberSocket[];
    const spec: LobbySpec = {
      id: nextId++,
      players,
      maxPlayers: players,
      address: LOAD_ADDRESS,
      ports: members.map((m) => m.port),
    };
    const run = new LobbyRun(members, stepsFor(target, spec), recorder, target, (done, ok) => {
      inFlight.delete(done);
      if (ok) {
        startOn(slot);
      } else if (!stopping) {
        // Late replies of the failed lobby must not reach the next one: fresh sockets.
        pendingRebinds++;
        void Promise.all(members.map(closeMember))
          .then(() => Promise.all(members.map((m) => bindMember(LOAD_ADDRESS, m.member))))
          .then((fresh) => {
            pendingRebinds--;
            if (stopping) {
              // The run ended while these were binding: nobody else will close them.
              void Promise.all(fresh.map(closeMember));
              if (inFlight.size === 0 && pendingRebinds === 0) drained?.();
              return;
            }
            slots[slot] = fresh;
            startOn(slot);
          });
      }
      if (stopping && inFlight.size === 0 && pendingRebinds === 0) drained?.();
    });
    inFlight.add(run);
    run.start();
  };

  const scan = setInterval(() => {
    const now = performance.now();
    for (const run of inFlight) {
      if (now - run.sentAtMs > STEP_TIMEOUT_MS) {
        if (recorder.counting) recorder.counts.timeouts++;
        run.fail();
      }
    }
  }, TIMEOUT_SCAN_INTERVAL_MS);

  try {
    for (let s = 0; s < concurrency; s++) startOn(s);
    await sleep(options.warmupMs);
    const cpuBefore = process.cpuUsage();
    const openedAt = performance.now();
    options.onWindowOpen?.();
    recorder.counting = true;
    await sleep(options.measureMs);
    recorder.counting = false;
    options.onWindowClose?.();
    const windowMs = performance.now() - openedAt;
    const cpu = process.cpuUsage(cpuBefore);
    stopping = true;
    if (inFlight.size > 0 || pendingRebinds > 0) {
      await Promise.race([
        new Promise<void>((resolve) => {
          drained = resolve;
        }),
        sleep(DRAIN_LIMIT_MS),
      ]);
    }
    return {
      ...recorder.counts,
      windowMs,
      latenciesMs: sortedLatencies(recorder.latencies),
      loadCpuUs: cpu.user + cpu.system,
    };
  } finally {
    clearInterval(scan);
    stopping = true;
    for (const run of inFlight) run.fail();
    await Promise.all(slots.flat().map(closeMember));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface IdleSessionsOptions {
  readonly target: LoadTarget;
  readonly sessions: number;
  readonly firstLobbyId: number;
  /** Sessions registered at once (bounded so that no socket buffer overflows on loopback). */
  readonly concurrency: number;
  /** Sessions per batch of fresh sockets: 2 × this many sockets are open at a time. */
  readonly batchSize: number;
  /** MAX of each session; above 2 so that 2 members leave it waiting (no autostart). */
  readonly maxPlayers: number;
}

export interface IdleSessionsResult {
  readonly opened: number;
  readonly failed: number;
  /** Of `failed`: replies that differed from the protocol, and steps never answered. */
  readonly verifyFailures: number;
  readonly timeouts: number;
  readonly elapsedMs: number;
}

/**
 * The loopback address of one member of idle session `session` (side 0 = host, 1 = joiner).
 * Every member gets an address of its own, as real clients behind their own NATs do, so the
 * server cannot share address strings between members (127.0.0.0/8 is all local on Linux).
 */
export function idleMemberAddress(session: number, side: 0 | 1): string {
  const octet2 = 100 + side * 16 + ((session >>> 16) & 15);
  return `127.${octet2}.${(session >>> 8) & 255}.${session & 255}`;
}

/**
 * Opens `sessions` idle 2-member sessions (rs + rc from the host's socket, rc from the
 * joiner's), every member from its own address:port. Sockets are closed batch by batch once
 * their sessions are registered: the server keeps the sessions; nothing is sent to them after.
 */
export async function openIdleSessions(options: IdleSessionsOptions): Promise<IdleSessionsResult> {
  const startedAt = performance.now();
  const recorder = new LoadRecorder();
  recorder.counting = true;
  let opened = 0;
  let failed = 0;
  let nextId = options.firstLobbyId;
  for (let done = 0; done < options.sessions; ) {
    const size = Math.min(options.batchSize, options.sessions - done);
    const pairs = await Promise.all(
      Array.from({ length: size }, async (_, i) =>
        Promise.all([
          bindMember(idleMemberAddress(done + i, 0), 0),
          bindMember(idleMemberAddress(done + i, 1), 1),
        ]),
      ),
    );
    try {
      await new Promise<void>((resolve) => {
        let next = 0;
        let running = 0;
        const inFlight = new Set<LobbyRun>();
        const scan = setInterval(() => {
          const now = performance.now();
          for (const run of inFlight) {
            if (now - run.sentAtMs > STEP_TIMEOUT_MS) {
              recorder.counts.timeouts++;
              run.fail();
            }
          }
        }, TIMEOUT_SCAN_INTERVAL_MS);
        const launch = (): void => {
          while (running < options.concurrency && next < pairs.length) {
            const members = pairs[next++] as MemberSocket[];
            running++;
            const spec: LobbySpec = {
              id: nextId++,
              players: 2,
              maxPlayers: options.maxPlayers,
              address: LOAD_ADDRESS,
              ports: members.map((m) => m.port),
            };
            const run = new LobbyRun(
              members,
              serverLobbySteps(spec),
              recorder,
              options.target,
              (doneRun, ok) => {
                inFlight.delete(doneRun);
                running--;
                if (ok) opened++;
                else failed++;
                if (running === 0 && next >= pairs.length) {
                  clearInterval(scan);
                  resolve();
                } else {
                  launch();
                }
              },
            );
            inFlight.add(run);
            run.start();
          }
        };
        launch();
      });
    } finally {
      await Promise.all(pairs.flat().map(closeMember));
    }
    done += size;
  }
  return {
    opened,
    failed,
    verifyFailures: recorder.counts.verifyFailures,
    timeouts: recorder.counts.timeouts,
    elapsedMs: performance.now() - startedAt,
  };
}
