/**
 * One whole traversal in the simulator: the real rendezvous server core and N real client
 * cores on a simulated network with NATs, delay and loss. Used by tests and benchmarks.
 */
import type { PeerFailureCause, PunchPath } from '../client/index.js';
import { Traversal, type TraversalEvent } from '../client/index.js';
import { MAIN_SOCKET } from '../core/index.js';
import type { ErrorCode } from '../errors.js';
import type { Endpoint } from '../protocol/index.js';
import { ALT_PORT_BIT, RendezvousServer } from '../server/index.js';
import { SimDriver } from './driver.js';
import type { NatType } from './nat.js';
import { SimNetwork, type SimNetworkOptions } from './network.js';
import { seededBytes, seededRandom } from './random.js';

export const SIM_SERVER: Endpoint = { address: '203.0.113.200', port: 4000 };
/** The server's alternate port, as the README's server has it (NAT classification). */
export const SIM_SERVER_ALT_PORT = SIM_SERVER.port + 1;
/** Every simulated client binds this local port (cones then keep it on the public side). */
export const SIM_CLIENT_PORT = 50_000;
/** A simulation gives up after this much virtual time. */
export const SIM_LIMIT_MS = 60_000;

export interface SimulateTraversalOptions {
  /** Players including the host (default 2). */
  readonly players?: number;
  /** NAT of the host (player 0); default port-restricted. */
  readonly natA?: NatType;
  /** NAT of every other player; default port-restricted. */
  readonly natB?: NatType;
  /** Per-player NATs; overrides natA/natB when given. */
  readonly nats?: readonly NatType[];
  /** All players behind one shared router of type natA (LAN candidates must win). */
  readonly sameLan?: boolean;
  readonly oneWayDelayMs?: number;
  readonly lossRate?: number;
  readonly seed?: number;
  readonly punchBudgetMs?: number;
  /** When players i ≥ 1 start, in virtual ms (default 0 for everyone). */
  readonly joinDelayMs?: number;
  /** When the host starts, in virtual ms (default 0): joiners that come first must wait. */
  readonly hostDelayMs?: number;
  /**
   * The server relays and the clients ask for it, as by default outside the simulator
   * (default false: the simulator measures direct punching).
   */
  readonly relay?: boolean;
  /**
   * The clients measure their NAT class against the server's alternate port before
   * registering, as by default outside the simulator (default false), and so choose birthday
   * probing or the port sweep for the pairs that need them.
   */
  readonly classifyNat?: boolean;
  /** Every datagram and its fate (debugging). */
  readonly trace?: SimNetworkOptions['trace'];
}

export interface SimulatedClient {
  readonly name: string;
  readonly nat: NatType;
  /** Virtual ms from the client's start to its `punched` event; undefined when it failed. */
  readonly punchedAtMs: number | undefined;
  readonly failedCode: ErrorCode | undefined;
  readonly failedMessage: string | undefined;
  /** The path per peer name. */
  readonly paths: Readonly<Record<string, PunchPath>>;
  /** Peers a partial result did not reach, by name, with the cause. */
  readonly failedPeers: Readonly<Record<string, PeerFailureCause>>;
  readonly events: readonly TraversalEvent['type'][];
}

export interface SimulateTraversalResult {
  /** Every client reached `punched` with every peer (no partial result). */
  readonly ok: boolean;
  /** Per client, ms from its start to `punched` (NaN when it failed). */
  readonly punchedAtMs: number[];
  /** The time the last client punched (NaN unless ok): the lobby's time to connect. */
  readonly elapsedMs: number;
  /** Path the host used to reach player 1. */
  readonly path: PunchPath | undefined;
  readonly clients: SimulatedClient[];
  readonly endedAtMs: number;
  readonly datagrams: { sent: number; lost: number; filtered: number; unroutable: number };
}

export function simulateTraversal(options: SimulateTraversalOptions = {}): SimulateTraversalResult {
  const players = options.players ?? 2;
  const seed = options.seed ?? 1;
  const net = new SimNetwork({
    oneWayDelayMs: options.oneWayDelayMs ?? 20,
    lossRate: options.lossRate ?? 0,
    seed,
    trace: options.trace,
  });
  const random = seededRandom(seed ^ 0x5eed);
  const relay = options.relay ?? false;
  const classifyNat = options.classifyNat ?? false;
  const server = new RendezvousServer({
    randomBytes: seededBytes(random),
    relay,
    altPort: classifyNat ? SIM_SERVER_ALT_PORT : 0,
  });
  net.addHost(undefined, SIM_SERVER.address);
  net.addAgent(
    new SimDriver(net, server, SIM_SERVER.address, [
      [MAIN_SOCKET, SIM_SERVER.port],
      ...(classifyNat ? [[ALT_PORT_BIT, SIM_SERVER_ALT_PORT] as const] : []),
    ]),
  );

  const natOf = (i: number): NatType =>
    options.nats?.[i] ?? (i === 0 ? options.natA : options.natB) ?? 'port-restricted';
  const shared =
    options.sameLan && natOf(0) !== 'none'
      ? net.addNat(natOf(0) as Exclude<NatType, 'none'>)
      : undefined;

  interface Running {
    name: string;
    nat: NatType;
    startAt: number;
    core: Traversal;
    punchedAt?: number;
    failed?: { code: ErrorCode; message: string };
    paths: Record<string, PunchPath>;
    failedPeers: Record<string, PeerFailureCause>;
    events: TraversalEvent['type'][];
  }
  const clients: Running[] = [];
  for (let i = 0; i < players; i++) {
    const nat = natOf(i);
    const router = shared ?? (nat === 'none' ? undefined : net.addNat(nat));
    const address = net.addHost(router);
    const name = i === 0 ? 'host' : `player${i}`;
    const run: Running = {
      name,
      nat,
      startAt: i === 0 ? (options.hostDelayMs ?? 0) : (options.joinDelayMs ?? 0),
      paths: {},
      failedPeers: {},
      events: [],
      core: undefined as unknown as Traversal,
    };
    run.core = new Traversal({
      server: SIM_SERVER,
      session: 'sim',
      isHost: i === 0,
      name,
      nickname: name,
      maxPlayers: players,
      localCandidates: [{ address, port: SIM_CLIENT_PORT }],
      random: seededRandom(seed * 31 + i),
      punchBudgetMs: options.punchBudgetMs,
      relay,
      classifyNat,
    });
    const driver = new SimDriver(
      net,
      run.core,
      address,
      [[MAIN_SOCKET, SIM_CLIENT_PORT]],
      (_now, ev: TraversalEvent) => {
        run.events.push(ev.type);
        if (ev.type === 'punched') {
          run.punchedAt = net.now - run.startAt;
          for (const p of ev.peers) run.paths[p.name] = p.path;
          for (const f of ev.failed) run.failedPeers[f.name] = f.cause;
        } else if (ev.type === 'failed') {
          run.failed = { code: ev.error.code, message: ev.error.message };
        }
      },
    );
    clients.push(run);
    // Starts the core at its start time (the host first, so equal times keep its order).
    let started = false;
    net.addAgent({
      nextDeadline: () => (started ? driver.nextDeadline() : run.startAt),
      handleTimeout: (now) => {
        if (started) {
          driver.handleTimeout(now);
          return;
        }
        started = true;
        run.core.start(now);
        driver.drain(now);
      },
    });
  }

  const endedAtMs = net.run(SIM_LIMIT_MS, () =>
    clients.every((c) => c.punchedAt !== undefined || c.failed !== undefined),
  );
  const punchedAtMs = clients.map((c) => c.punchedAt ?? Number.NaN);
  const ok = clients.every(
    (c) => c.punchedAt !== undefined && Object.keys(c.failedPeers).length === 0,
  );
  return {
    ok,
    punchedAtMs,
    elapsedMs: ok ? Math.max(...punchedAtMs) : Number.NaN,
    path: clients[0]?.paths[clients[1]?.name ?? ''],
    clients: clients.map((c) => ({
      name: c.name,
      nat: c.nat,
      punchedAtMs: c.punchedAt,
      failedCode: c.failed?.code,
      failedMessage: c.failed?.message,
      paths: c.paths,
      failedPeers: c.failedPeers,
      events: c.events,
    })),
    endedAtMs,
    datagrams: {
      sent: net.stats.sent,
      lost: net.stats.lost,
      filtered: net.stats.filtered,
      unroutable: net.stats.unroutable,
    },
  };
}
