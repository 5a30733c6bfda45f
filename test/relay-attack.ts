/**
 * The relay scenarios of test/relay-limits.test.ts, run inside a network namespace of the
 * test's own (`node dist/test/relay-attack.js '<plan JSON>'`): the server is the CLI started
 * as the README says (`holepunch-server 4000 y`), the members are raw v2 sockets on the
 * namespace's loopback addresses. Prints one JSON line with what each scenario measured.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { fileURLToPath } from 'node:url';
import { SERVER_CLI_PATH } from '../src/cli/index.js';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { hasV2Prefix } from '../src/protocol/magic.js';
import {
  decodeV2,
  encodeRelayBind,
  encodeV2,
  padRegisterRequest,
  type V2Message,
} from '../src/protocol/v2.js';

export type RelayScenario = 'attack' | 'legit' | 'replay';

export interface RelayPlan {
  readonly scenario: RelayScenario;
  /** The server's address the members send to. */
  readonly server: string;
  /** Attack/legit: the address of each member of each session (sessions × 32). */
  readonly sessions?: readonly (readonly string[])[];
  /** Attack and replay: the two members of the relay-only pair from another source. */
  readonly pair?: readonly [string, string];
  /** Replay: where the attacker replays from. */
  readonly attacker?: string;
  /** Wait for the server's `relay limits reached` line (one per 10 s). */
  readonly waitForLimitLog?: boolean;
}

export interface PairResult {
  readonly granted: boolean;
  readonly aToB: boolean;
  readonly bToA: boolean;
  readonly refusal?: string;
}

export interface RelayOutcome {
  readonly scenario: RelayScenario;
  /** Distinct allocations (relay ports) granted to the sessions' members. */
  readonly allocations?: number;
  /** Per session: distinct allocations. */
  readonly perSession?: number[];
  /** relay_unavailable messages the sessions' members got, by message. */
  readonly refusals?: Record<string, number>;
  readonly pair?: PairResult;
  readonly replay?: {
    readonly attackerGotData: boolean;
    readonly memberGotDataBeforeMove: boolean;
    readonly movedGotData: boolean;
    readonly oldMappingGotDataAfterMove: boolean;
  };
  /** The server's `relay limits reached` lines. */
  readonly limitLines?: Record<string, unknown>[];
  readonly memberRefusedLines?: number;
  readonly ms: number;
}

const SERVER_PORT = 4000;
const RETRY_MS = 300;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One raw v2 member: its own socket, requests retried until answered. */
class RawMember {
  readonly socket: dgram.Socket;
  readonly server: Endpoint;
  #nextId = 1;
  readonly #waiting = new Map<number, (msg: V2Message, from: Endpoint) => void>();
  /** Game datagrams (not v2) that arrived. */
  readonly data: { from: Endpoint; text: string }[] = [];
  token: Uint8Array<ArrayBufferLike> = new Uint8Array(0);

  private constructor(socket: dgram.Socket, server: Endpoint) {
    this.socket = socket;
    this.server = server;
    socket.on('message', (data, rinfo) => {
      const from = { address: rinfo.address, port: rinfo.port };
      if (!hasV2Prefix(data)) {
        this.data.push({ from, text: data.toString() });
        return;
      }
      const d = decodeV2(data);
      if (!d.ok || d.msg.requestId === 0) return;
      this.#waiting.get(d.msg.requestId)?.(d.msg, from);
    });
  }

  static async open(address: string, server: string): Promise<RawMember> {
    const socket = dgram.createSocket(isIPv6(address) ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, address, () => resolve());
    });
    return new RawMember(socket, { address: server, port: SERVER_PORT });
  }

  get port(): number {
    return this.socket.address().port;
  }

  id(): number {
    return this.#nextId++;
  }

  send(to: Endpoint, data: Uint8Array): void {
    this.socket.send(data, to.port, to.address);
  }

  /** Sends `data` (request id `id`) until a reply with that id comes, `tries` times. */
  async request(
    id: number,
    data: Uint8Array,
    tries = 10,
    to: Endpoint = this.server,
  ): Promise<V2Message | undefined> {
    let reply: V2Message | undefined;
    const got = new Promise<void>((resolve) =>
      this.#waiting.set(id, (msg) => {
        reply = msg;
        resolve();
      }),
    );
    try {
      for (let i = 0; i < tries && reply === undefined; i++) {
        this.send(to, data);
        await Promise.race([got, sleep(RETRY_MS)]);
      }
    } finally {
      this.#waiting.delete(id);
    }
    return reply;
  }

  close(): void {
    this.socket.close();
  }
}

/** Host or join `session`, then validate with a keepalive: the member's token. */
async function register(m: RawMember, session: string, name: string, host: boolean) {
  const id = m.id();
  const msg: V2Message = host
    ? {
        type: 'host',
        requestId: id,
        session,
        maxPlayers: 32,
        name,
        nickname: name,
        candidates: [],
      }
    : { type: 'join', requestId: id, session, name, nickname: name, candidates: [] };
  const reply = await m.request(id, padRegisterRequest(encodeV2(msg)), 20);
  if (reply?.type !== 'registered') {
    throw new Error(`${name}: ${reply?.type === 'error' ? reply.message : 'no answer'}`);
  }
  m.token = reply.token;
  const k = m.id();
  const lobby = await m.request(
    k,
    encodeV2({ type: 'keepalive', requestId: k, session, token: m.token, lobbyVersion: 0 }),
    20,
  );
  // The last of a full lobby hears `peers`: AUTOSTART y started the session.
  if (lobby?.type !== 'lobby' && lobby?.type !== 'peers') {
    throw new Error(
      `${name} not validated: ${lobby?.type === 'error' ? lobby.message : lobby?.type}`,
    );
  }
}

interface Lobby {
  readonly session: string;
  readonly members: RawMember[];
  readonly names: string[];
}

async function startLobby(session: string, addresses: readonly string[], server: string) {
  const members: RawMember[] = [];
  const names = addresses.map((_, i) => `m${i}`);
  for (const address of addresses) members.push(await RawMember.open(address, server));
  const [host, ...joiners] = members;
  if (host === undefined) throw new Error('no host');
  await register(host, session, 'm0', true);
  // A few at a time: the per-source request bucket holds a burst of 400.
  for (let i = 0; i < joiners.length; i += 8) {
    await Promise.all(
      joiners.slice(i, i + 8).map((m, k) => register(m, session, `m${i + k + 1}`, false)),
    );
  }
  const id = host.id();
  const ok = await host.request(
    id,
    encodeV2({ type: 'start', requestId: id, session, token: host.token }),
  );
  if (ok?.type !== 'ok') throw new Error(`${session} did not start`);
  return { session, members, names } satisfies Lobby;
}

interface Grant {
  readonly port: number;
  readonly id: Uint8Array;
  readonly bindToken: Uint8Array;
}

async function askRelay(lobby: Lobby, i: number, j: number, tries: number) {
  const m = lobby.members[i] as RawMember;
  const id = m.id();
  const reply = await m.request(
    id,
    encodeV2({
      type: 'relay_allocate',
      requestId: id,
      session: lobby.session,
      token: m.token,
      peer: lobby.names[j] as string,
    }),
    tries,
  );
  if (reply?.type === 'relay_granted') {
    return { port: reply.port, id: reply.id, bindToken: reply.bindToken } satisfies Grant;
  }
  return reply?.type === 'error' ? reply.message : 'no answer';
}

/** Every pair of every lobby asked (by `bothSides` or by the lower member), 16 at a time. */
async function askEveryPair(lobbies: readonly Lobby[], bothSides: boolean, tries: number) {
  const jobs: [Lobby, number, number][] = [];
  for (const lobby of lobbies) {
    const n = lobby.members.length;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        if (i !== j && (bothSides || i < j)) jobs.push([lobby, i, j]);
      }
    }
  }
  const ports = lobbies.map(() => new Set<number>());
  const refusals: Record<string, number> = {};
  let next = 0;
  const worker = async () => {
    for (let k = next++; k < jobs.length; k = next++) {
      const [lobby, i, j] = jobs[k] as [Lobby, number, number];
      const got = await askRelay(lobby, i, j, tries);
      if (typeof got === 'string') refusals[got] = (refusals[got] ?? 0) + 1;
      else ports[lobbies.indexOf(lobby)]?.add(got.port);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  const all = new Set<number>();
  for (const p of ports) for (const x of p) all.add(x);
  return { perSession: ports.map((p) => p.size), allocations: all.size, refusals };
}

/** Binds `m` to its grant with a signed bind (counter `m.id()`); true once relay_bound came. */
async function bind(m: RawMember, g: Grant, from: RawMember = m): Promise<boolean> {
  const id = from.id();
  const reply = await from.request(id, encodeRelayBind(g.bindToken, id, g.id), 10, {
    address: m.server.address,
    port: g.port,
  });
  return reply?.type === 'relay_bound';
}

async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  for (const until = performance.now() + ms; performance.now() < until; ) {
    if (check()) return true;
    await sleep(20);
  }
  return check();
}

/** A 2-member session from `pair`, both sides ask and bind, then each sends the other a line. */
async function relayOnlyPair(pair: readonly [string, string], server: string) {
  const lobby = await startLobby('outside pair', pair, server);
  const [a, b] = lobby.members as [RawMember, RawMember];
  try {
    const ga = await askRelay(lobby, 0, 1, 10);
    const gb = await askRelay(lobby, 1, 0, 10);
    if (typeof ga === 'string' || typeof gb === 'string') {
      return {
        granted: false,
        aToB: false,
        bToA: false,
        refusal: typeof ga === 'string' ? ga : (gb as string),
      };
    }
    await bind(a, ga);
    await bind(b, gb);
    const relay = { address: server, port: ga.port };
    a.send(relay, new TextEncoder().encode('from a'));
    b.send(relay, new TextEncoder().encode('from b'));
    const aToB = await waitFor(() => b.data.some((d) => d.text === 'from a'), 2000);
    const bToA = await waitFor(() => a.data.some((d) => d.text === 'from b'), 2000);
    return { granted: true, aToB, bToA };
  } finally {
    for (const m of lobby.members) m.close();
  }
}

async function replay(plan: RelayPlan) {
  const pair = plan.pair as readonly [string, string];
  const lobby = await startLobby('replayed', pair, plan.server);
  const [a, b] = lobby.members as [RawMember, RawMember];
  const attacker = await RawMember.open(plan.attacker as string, plan.server);
  const moved = await RawMember.open(pair[0], plan.server);
  try {
    const ga = await askRelay(lobby, 0, 1, 10);
    const gb = await askRelay(lobby, 1, 0, 10);
    if (typeof ga === 'string' || typeof gb === 'string') throw new Error('no relay');
    if (!(await bind(a, ga)) || !(await bind(b, gb))) throw new Error('bind failed');
    const relay = { address: plan.server, port: ga.port };
    // a's refresh bind, seen by an on-path observer that replays it from its own address.
    const counter = a.id();
    const captured = encodeRelayBind(ga.bindToken, counter, ga.id);
    a.send(relay, captured);
    await sleep(100);
    attacker.send(relay, captured);
    await sleep(100);
    b.send(relay, new TextEncoder().encode('b1'));
    const memberGotDataBeforeMove = await waitFor(() => a.data.some((d) => d.text === 'b1'), 1000);
    const attackerGotData = attacker.data.some((d) => d.text === 'b1');
    // a's NAT re-maps it: its next bind (a greater counter) comes from a new port.
    const again = counter + 1;
    await moved.request(again, encodeRelayBind(ga.bindToken, again, ga.id), 10, relay);
    b.send(relay, new TextEncoder().encode('b2'));
    const movedGotData = await waitFor(() => moved.data.some((d) => d.text === 'b2'), 1000);
    return {
      attackerGotData: attackerGotData || attacker.data.some((d) => d.text === 'b2'),
      memberGotDataBeforeMove,
      movedGotData,
      oldMappingGotDataAfterMove: a.data.some((d) => d.text === 'b2'),
    };
  } finally {
    for (const m of [...lobby.members, attacker, moved]) m.close();
  }
}

/** The CLI as the README starts it, with its JSON log lines. */
async function startServerCli(): Promise<{
  child: ChildProcess;
  lines: Record<string, unknown>[];
}> {
  const child = spawn(process.execPath, [SERVER_CLI_PATH, String(SERVER_PORT), 'y'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: Record<string, unknown>[] = [];
  let buffered = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      try {
        lines.push(JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>);
      } catch {
        // not a log line
      }
      buffered = buffered.slice(nl + 1);
    }
  });
  if (!(await waitFor(() => lines.some((l) => l.msg === 'listening'), 10_000))) {
    child.kill('SIGKILL');
    throw new Error('the server did not start');
  }
  return { child, lines };
}

export async function runRelayPlan(plan: RelayPlan): Promise<RelayOutcome> {
  const started = performance.now();
  const { child, lines } = await startServerCli();
  try {
    if (plan.scenario === 'replay') {
      return { scenario: 'replay', replay: await replay(plan), ms: performance.now() - started };
    }
    const lobbies: Lobby[] = [];
    const sessions = plan.sessions ?? [];
    for (let s = 0; s < sessions.length; s++) {
      lobbies.push(await startLobby(`lobby ${s}`, sessions[s] as string[], plan.server));
    }
    // Attackers ask for each pair once, without waiting long for refusals (their error
    // replies are rate-limited); a legit lobby asks from both sides, as clients do.
    const legit = plan.scenario === 'legit';
    const asked = await askEveryPair(lobbies, legit, legit ? 20 : 3);
    const pair = plan.pair === undefined ? undefined : await relayOnlyPair(plan.pair, plan.server);
    if (plan.waitForLimitLog) {
      await waitFor(() => lines.some((l) => l.msg === 'relay limits reached'), 12_000);
    }
    for (const lobby of lobbies) for (const m of lobby.members) m.close();
    return {
      scenario: plan.scenario,
      ...asked,
      ...(pair === undefined ? {} : { pair }),
      limitLines: lines.filter((l) => l.msg === 'relay limits reached'),
      memberRefusedLines: lines.filter(
        (l) => l.msg === 'member refused' && String(l.reason).startsWith('relay'),
      ).length,
      ms: performance.now() - started,
    };
  } finally {
    child.kill('SIGKILL');
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const plan = JSON.parse(process.argv[2] ?? '{}') as RelayPlan;
  runRelayPlan(plan).then(
    (outcome) => {
      process.stdout.write(`${JSON.stringify(outcome)}\n`);
      process.exit(0);
    },
    (error: unknown) => {
      process.stderr.write(`${(error as Error).stack}\n`);
      process.exit(1);
    },
  );
}
