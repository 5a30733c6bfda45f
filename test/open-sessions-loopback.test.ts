// Open sessions (protocol v2 revision 1) end to end: the real server shell and real
// HolePunchClients over UDP on loopback, with the server's defaults. The pure server core's
// rules are in v2-open-sessions.test.ts; this checks that both ends carry them out together.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import {
  HolePunchClient,
  type HolePunchResult,
  type PunchedPeer,
  type StartTraversalOptions,
} from '../src/client/index.js';
import { HolePunchError } from '../src/errors.js';
import { type RunningServer, startServer } from '../src/server/shell.js';

const LOOPBACK = '127.0.0.1';
/** Bounds every wait on an event, so a broken build fails instead of hanging. */
const EVENT_WAIT_MS = 10_000;

describe('open sessions over loopback (keepOpenMs, late joiners, rejoins, fail-fast)', () => {
  let server: RunningServer;
  const clients: HolePunchClient[] = [];

  before(async () => {
    server = await startServer({ port: 0, host: LOOPBACK });
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
  });

  /** A client; `crashed()` makes it fall silent both ways, as a game that froze or died. */
  function player(): { client: HolePunchClient; crash: () => void } {
    let crashed = false;
    const client = new HolePunchClient({
      server: { address: LOOPBACK, port: server.port },
      bindAddress: LOOPBACK,
      dropDatagram: () => crashed,
    });
    clients.push(client);
    return {
      client,
      crash: () => {
        crashed = true;
      },
    };
  }

  function traverse(
    c: HolePunchClient,
    session: string,
    name: string,
    extra: Partial<StartTraversalOptions> = {},
  ): Promise<HolePunchResult> {
    return c.startTraversal({
      session,
      isHost: name === 'host',
      name,
      nickname: name,
      maxPlayers: 4,
      timeoutMs: 15_000,
      ...extra,
    });
  }

  /** The next `event` of `c` for which `match` holds, bounded by EVENT_WAIT_MS. */
  async function next<T>(
    c: HolePunchClient,
    event: 'peerJoined' | 'peerLeft' | 'lobbyUpdate',
    match: (e: T) => boolean,
  ): Promise<T> {
    const signal = AbortSignal.timeout(EVENT_WAIT_MS);
    for (;;) {
      const [e] = (await once(c, event, { signal })) as [T];
      if (match(e)) return e;
    }
  }

  /** True once a datagram sent from `a` to `peer` arrives at `b` (bounded). */
  async function reaches(a: HolePunchClient, peer: PunchedPeer, b: HolePunchClient) {
    const text = `game ${Math.random()}`;
    let arrived = false;
    const listen = (data: Buffer) => {
      if (data.toString() === text) arrived = true;
    };
    b.on('message', listen);
    try {
      for (let i = 0; i < 40 && !arrived; i++) {
        a.send(text, peer.port, peer.address);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      b.off('message', listen);
    }
    return arrived;
  }

  it('a player joining a started open session is punched to everyone present, and game traffic flows', async () => {
    const host = player().client;
    const first = player().client;
    const keepOpenMs = 20_000;
    const started = Promise.all([
      traverse(host, 'open:1', 'host', { keepOpenMs, maxPlayers: 3 }),
      (async () => {
        await once(host, 'sessionRegistered');
        return traverse(first, 'open:1', 'p1');
      })(),
    ]);
    await next<{ nicknames: string[] }>(host, 'lobbyUpdate', (e) => e.nicknames.length === 2);
    host.finalizePeers();
    const [hosted, joined] = await started;
    assert.ok(hosted.openMs > 0 && hosted.openMs <= keepOpenMs, `host: open ${hosted.openMs}`);
    assert.ok(joined.openMs > 0, 'the first player knows the session is open');
    const hostSees = next<PunchedPeer>(host, 'peerJoined', (p) => p.name === 'late');
    const firstSees = next<PunchedPeer>(first, 'peerJoined', (p) => p.name === 'late');
    const late = player().client;
    const lately = await traverse(late, 'open:1', 'late');
    assert.deepEqual(lately.peers.map((p) => p.name).sort(), ['host', 'p1']);
    const [hostGot, firstGot] = await Promise.all([hostSees, firstSees]);
    assert.equal(hostGot.port, late.localPort);
    assert.equal(firstGot.port, late.localPort);
    assert.ok(await reaches(host, hostGot, late), 'host to late joiner');
    assert.ok(await reaches(first, firstGot, late), 'first player to late joiner');
    const toHost = lately.peers.find((p) => p.name === 'host') as PunchedPeer;
    assert.ok(await reaches(late, toHost, host), 'late joiner to host');
  });

  it('a player whose game crashed comes back under its name and is punched again', async () => {
    const host = player().client;
    const crashed = player();
    const both = Promise.all([
      traverse(host, 'open:2', 'host', { keepOpenMs: 20_000, maxPlayers: 2 }),
      traverse(crashed.client, 'open:2', 'p1'),
    ]);
    await both;
    crashed.crash();
    const back = player().client;
    const hostSees = next<PunchedPeer>(host, 'peerJoined', (p) => p.name === 'p1');
    // Same IP (loopback), new port: the server takes it at once as the same player.
    const rejoined = await traverse(back, 'open:2', 'p1');
    assert.deepEqual(
      rejoined.peers.map((p) => p.name),
      ['host'],
    );
    const seen = await hostSees;
    assert.equal(seen.port, back.localPort, 'the host now talks to the new game');
    assert.ok(await reaches(host, seen, back));
  });

  it('memberSilenceMs: a crashed player leaves the others in about that time', async () => {
    const host = player().client;
    const crashed = player();
    const memberSilenceMs = 6_000;
    await Promise.all([
      traverse(host, 'open:3', 'host', { keepOpenMs: 30_000, memberSilenceMs, maxPlayers: 2 }),
      traverse(crashed.client, 'open:3', 'p1'),
    ]);
    const told: string[] = [];
    host.on('peerLeft', (e) => told.push(`${e.name} ${e.why}`));
    const gone = next<{ name: string; why: string }>(host, 'peerLeft', (e) => e.name === 'p1');
    const at = performance.now();
    crashed.crash();
    const e = await gone;
    const tookMs = performance.now() - at;
    assert.equal(e.why, 'silent');
    // The newer peer list without it comes with the next keepalive (silence / 3): no second report.
    await new Promise((r) => setTimeout(r, memberSilenceMs / 3 + 1_000));
    assert.deepEqual(told, ['p1 silent'], 'told once');
    // Its last keepalive was up to a keepalive period (silence / 3) before the crash.
    assert.ok(
      tookMs > memberSilenceMs * (2 / 3) - 500 && tookMs < memberSilenceMs + 2_000,
      `${tookMs}`,
    );
  });

  it('sessionWaitMs 0: a session code that does not exist fails at once with session_not_found', async () => {
    const c = player().client;
    const at = performance.now();
    await assert.rejects(
      traverse(c, 'open:missing', 'p1', { sessionWaitMs: 0 }),
      (err: unknown) => err instanceof HolePunchError && err.code === 'session_not_found',
    );
    assert.ok(performance.now() - at < 2_000, `${performance.now() - at} ms`);
  });

  it('timeoutMs 3000 on a session code that does not exist reports session_not_found, not timeout', async () => {
    const c = player().client;
    const at = performance.now();
    await assert.rejects(
      traverse(c, 'open:missing', 'p1', { timeoutMs: 3_000 }),
      (err: unknown) => err instanceof HolePunchError && err.code === 'session_not_found',
    );
    const tookMs = performance.now() - at;
    assert.ok(tookMs >= 2_500 && tookMs < 5_000, `${tookMs} ms`);
  });
});
