import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import {
  HolePunchClient,
  type HolePunchResult,
  type PathChangedEvent,
} from '../src/client/index.js';
import { HolePunchError } from '../src/errors.js';
import { decodeV2, encodeV2 } from '../src/protocol/v2.js';
import { type RunningServer, startServer } from '../src/server/shell.js';
import { seededRandom } from '../src/sim/random.js';

const LOOPBACK = '127.0.0.1';
const GAME_WAIT_MS = 3000;

/** Starts host + players on ephemeral ports and waits for every holePunched. */
async function lobby(
  server: RunningServer,
  session: string,
  players: number,
  clients: HolePunchClient[],
  drop?: () => boolean,
  address = LOOPBACK,
): Promise<HolePunchResult[]> {
  const made: HolePunchClient[] = [];
  for (let i = 0; i < players; i++) {
    const c = new HolePunchClient({
      server: { address, port: server.port },
      bindAddress: address,
      dropDatagram: drop ? () => drop() : undefined,
    });
    clients.push(c);
    made.push(c);
  }
  return await Promise.all(
    made.map((c, i) =>
      c.startTraversal({
        session,
        isHost: i === 0,
        name: i === 0 ? 'host' : `p${i}`,
        nickname: i === 0 ? 'Host: 🦄' : `Player, ${i}`,
        maxPlayers: players,
        timeoutMs: 20_000,
      }),
    ),
  );
}

function assertEveryPairConfirmed(clients: HolePunchClient[], results: HolePunchResult[]): void {
  const ports = clients.map((c) => c.localPort);
  results.forEach((r, i) => {
    assert.equal(r.peers.length, clients.length - 1, `client ${i} confirmed every other`);
    const seen = r.peers.map((p) => p.port).sort();
    const expected = ports.filter((_, j) => j !== i).sort();
    assert.deepEqual(seen, expected, `client ${i} knows every peer's real port`);
    if (i > 0) assert.equal(r.hostPort, ports[0]);
  });
}

/** Every client sends a game datagram to every peer; resolves when all arrived (bounded). */
async function gameTrafficFlows(clients: HolePunchClient[], results: HolePunchResult[]) {
  const expected = clients.length * (clients.length - 1);
  const got = new Set<string>();
  const listeners = clients.map((c, i) => {
    const l = (data: Buffer) => got.add(`${data.toString()}>${i}`);
    c.on('message', l);
    return l;
  });
  try {
    const deadline = Date.now() + GAME_WAIT_MS;
    while (got.size < expected && Date.now() < deadline) {
      results.forEach((r, i) => {
        for (const p of r.peers) clients[i]?.send(`game from ${i}`, p.port, p.address);
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    clients.forEach((c, i) => {
      c.off('message', listeners[i] as (data: Buffer) => void);
    });
  }
  assert.equal(got.size, expected, `game datagrams seen: ${[...got].join(', ')}`);
}

describe('HolePunchClient over loopback through the real server', () => {
  let server: RunningServer;
  const clients: HolePunchClient[] = [];

  before(async () => {
    server = await startServer({ port: 0, host: LOOPBACK });
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
  });

  it('host + 3 players punch every pair, then game datagrams flow with the server stopped', async () => {
    const events: string[] = [];
    const results = await (async () => {
      const p = lobby(server, 'quad', 4, clients);
      clients[0]?.on('sessionRegistered', () => events.push('registered'));
      clients[0]?.on('lobbyUpdate', (e) =>
        events.push(`lobby ${e.nicknames.length}/${e.maxPlayers}`),
      );
      return await p;
    })();
    assertEveryPairConfirmed(clients.slice(0, 4), results);
    assert.ok(events.includes('registered'));
    assert.ok(results[1]?.peers.some((p) => p.isHost && p.nickname === 'Host: 🦄'));
    await server.close();
    await gameTrafficFlows(clients.slice(0, 4), results);
    server = await startServer({ port: 0, host: LOOPBACK });
  });

  it('with 30% of datagrams dropped in both directions every lobby still completes', async () => {
    const rnd = seededRandom(2024);
    let dropped = 0;
    let seen = 0;
    const drop = () => {
      seen++;
      const lost = rnd() < 0.3;
      if (lost) dropped++;
      return lost;
    };
    const start = clients.length;
    const [r1, r2] = await Promise.all([
      lobby(server, 'lossy-a', 4, clients, drop),
      lobby(server, 'lossy-b', 2, clients, drop),
    ]);
    assertEveryPairConfirmed(clients.slice(start, start + 4), r1);
    assertEveryPairConfirmed(clients.slice(start + 4, start + 6), r2);
    assert.ok(dropped >= 20 && dropped / seen > 0.2, `dropped ${dropped} of ${seen} datagrams`);
  });

  it('a third party with the session and member names but no token cannot remove, start or close', async () => {
    const host = new HolePunchClient({ server: { address: LOOPBACK, port: server.port } });
    const member = new HolePunchClient({ server: { address: LOOPBACK, port: server.port } });
    clients.push(host, member);
    const lobbies: number[] = [];
    host.on('lobbyUpdate', (e) => lobbies.push(e.nicknames.length));
    const hostRun = host.startTraversal({
      session: 'guarded',
      isHost: true,
      name: 'h',
      maxPlayers: 3,
      timeoutMs: 15_000,
    });
    hostRun.catch(() => {});
    const memberRun = member.startTraversal({
      session: 'guarded',
      isHost: false,
      name: 'm',
      maxPlayers: 3,
      timeoutMs: 15_000,
    });
    memberRun.catch(() => {});
    for (let i = 0; i < 100 && !lobbies.includes(2); i++)
      await new Promise((r) => setTimeout(r, 20));
    assert.ok(lobbies.includes(2), 'both in the lobby');

    const attacker = dgram.createSocket('udp4');
    try {
      await new Promise<void>((resolve) => attacker.bind(0, LOOPBACK, resolve));
      const answers: string[] = [];
      attacker.on('message', (data) => {
        const d = decodeV2(data);
        if (d.ok && d.msg.type === 'error') answers.push(d.msg.code);
        else if (d.ok) answers.push(d.msg.type);
      });
      const guess = new Uint8Array(16);
      const attempts = [
        encodeV2({ type: 'leave', requestId: 1, session: 'guarded', token: guess }),
        encodeV2({ type: 'start', requestId: 2, session: 'guarded', token: guess }),
        encodeV2({ type: 'close', requestId: 3, session: 'guarded', token: guess, reason: 'x' }),
        encodeV2({
          type: 'join',
          requestId: 4,
          session: 'guarded',
          name: 'm',
          nickname: 'm',
          candidates: [],
        }),
      ];
      for (const a of attempts) attacker.send(a, server.port, LOOPBACK);
      for (let i = 0; i < 100 && answers.length < attempts.length; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.deepEqual(answers.sort(), [
        'name_taken',
        'not_authorized',
        'not_authorized',
        'not_authorized',
      ]);
    } finally {
      attacker.close();
    }
    // The lobby is untouched: the host can still start and both punch.
    host.finalizePeers();
    const [h, m] = await Promise.all([hostRun, memberRun]);
    assert.equal(h.peers[0]?.name, 'm');
    assert.equal(m.peers[0]?.name, 'h');
  });

  it('a player who leaves after the start is named; the others play on with each other at once', async () => {
    const host = new HolePunchClient({ server: { address: LOOPBACK, port: server.port } });
    const carol = new HolePunchClient({ server: { address: LOOPBACK, port: server.port } });
    clients.push(host, carol);
    const registered = once(host, 'sessionRegistered');
    const opts = { session: 'partial', maxPlayers: 3, timeoutMs: 15_000 };
    const hostRun = host.startTraversal({ ...opts, isHost: true, name: 'h' });
    hostRun.catch(() => {});
    await registered;
    // bob: a bare socket that joins, shows its address, and leaves once the peers came.
    const bob = dgram.createSocket('udp4');
    try {
      await new Promise<void>((resolve) => bob.bind(0, LOOPBACK, resolve));
      let token: Uint8Array | undefined;
      let left = false;
      bob.on('message', (data) => {
        const d = decodeV2(data);
        if (!d.ok) return;
        if (d.msg.type === 'registered' && token === undefined) {
          token = d.msg.token;
          const ka = {
            type: 'keepalive',
            requestId: 2,
            session: 'partial',
            token,
            lobbyVersion: 0,
          } as const;
          bob.send(encodeV2(ka), server.port, LOOPBACK);
        } else if (d.msg.type === 'peers' && token !== undefined && !left) {
          left = true;
          const leave = encodeV2({ type: 'leave', requestId: 3, session: 'partial', token });
          bob.send(leave, server.port, LOOPBACK);
        }
      });
      const join = encodeV2({
        type: 'join',
        requestId: 1,
        session: 'partial',
        name: 'bob',
        nickname: 'Bob',
        candidates: [],
      });
      bob.send(join, server.port, LOOPBACK);
      for (let i = 0; i < 100 && token === undefined; i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.ok(token !== undefined, 'bob joined');
      const started = performance.now();
      const carolRun = carol.startTraversal({ ...opts, isHost: false, name: 'carol' });
      const [h, c] = await Promise.all([hostRun, carolRun]);
      assert.ok(performance.now() - started < 4000, 'no wait for the 8 s punch budget');
      assert.deepEqual(
        h.peers.map((p) => p.name),
        ['carol'],
      );
      assert.deepEqual(
        c.peers.map((p) => p.name),
        ['h'],
      );
      for (const r of [h, c]) {
        assert.deepEqual(
          r.failedPeers.map((f) => `${f.name} ${f.cause}`),
          ['bob left'],
        );
      }
      assert.equal(c.hostPort, host.localPort, 'carol reached the host');
    } finally {
      bob.close();
    }
  });

  it('a detached socket keeps the punched path after the client is closed', async () => {
    const pair: HolePunchClient[] = [];
    const [h, j] = await lobby(server, 'handover', 2, pair);
    clients.push(...pair);
    const [hostClient, joinClient] = pair as [HolePunchClient, HolePunchClient];
    const socket = hostClient.detachSocket();
    await hostClient.close();
    try {
      const got = new Promise<string>((resolve) => {
        joinClient.once('message', (data) => resolve(data.toString()));
      });
      const peer = h?.peers[0];
      assert.ok(peer && j);
      socket.send('still here', peer.port, peer.address);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve('nothing within 3 s'), GAME_WAIT_MS);
      });
      assert.equal(await Promise.race([got, timeout]), 'still here');
      clearTimeout(timer);
    } finally {
      socket.close();
    }
  });

  it('a refused join fails with a typed error and an abort ends a waiting traversal', async () => {
    const a = new HolePunchClient({ server: { address: LOOPBACK, port: server.port } });
    const b = new HolePunchClient({ server: { address: LOOPBACK, port: server.port } });
    clients.push(a, b);
    const ac = new AbortController();
    const waiting = a.startTraversal({
      session: 'solo',
      isHost: true,
      name: 'x',
      maxPlayers: 2,
      signal: ac.signal,
      timeoutMs: 15_000,
    });
    waiting.catch(() => {});
    await once(a, 'sessionRegistered', { signal: AbortSignal.timeout(5000) });
    const dup = b.startTraversal({ session: 'solo', isHost: true, name: 'y', maxPlayers: 2 });
    await assert.rejects(
      dup,
      (e: unknown) => e instanceof HolePunchError && e.code === 'session_exists',
    );
    ac.abort();
    await assert.rejects(
      waiting,
      (e: unknown) => e instanceof HolePunchError && e.code === 'aborted',
    );
  });
});

/** Why IPv6 cannot be tested on this machine, or false when it can (a ::1 socket binds). */
async function noIpv6(): Promise<string | false> {
  const probe = dgram.createSocket('udp6');
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.bind(0, '::1', () => resolve());
    });
    return false;
  } catch (error) {
    return `no IPv6 loopback here (${(error as Error).message})`;
  } finally {
    try {
      probe.close();
    } catch {
      // Never bound.
    }
  }
}

describe('HolePunchClient over IPv6 loopback, through a dual-stack server', {
  skip: await noIpv6(),
}, () => {
  it('an IPv6 lobby punches over IPv6 and game datagrams flow, beside an IPv4 lobby', async () => {
    const server = await startServer({ port: 0, host: '::' });
    const clients: HolePunchClient[] = [];
    try {
      const [v6, v4] = await Promise.all([
        lobby(server, 'six', 2, clients, undefined, '::1'),
        lobby(server, 'four', 2, clients, undefined, LOOPBACK),
      ]);
      // lobby() makes its clients before its first await: the first two are the IPv6 ones.
      for (const c of clients.slice(0, 2)) assert.equal(c.socket?.address().family, 'IPv6');
      for (const r of v6) {
        assert.equal(r.peers[0]?.address, '::1', 'the peer is reached over IPv6');
        assert.equal(r.publicAddress, '::1');
      }
      // IPv4 clients on the dual-stack server are told plain IPv4 addresses.
      for (const r of v4) assert.equal(r.peers[0]?.address, LOOPBACK);
      await gameTrafficFlows(clients.slice(0, 2), v6);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await server.close();
    }
  });
});

/** Relay ports of the loopback relay tests: outside the ephemeral range the clients bind. */
const RELAY_LOW = 21_000 + (process.pid % 400) * 20;
const RELAY_PORTS = { low: RELAY_LOW, high: RELAY_LOW + 19 };
const isRelayPort = (port: number) => port >= RELAY_PORTS.low && port <= RELAY_PORTS.high;

/**
 * Two players on `server` that never hear each other directly: only the server and its
 * relay ports get through, while `cut()` says so.
 */
function cutOffPair(
  server: RunningServer,
  relay: boolean,
  session: string,
  cut: () => boolean = () => true,
  punchBudgetMs = 400,
) {
  const clients = [0, 1].map(
    () =>
      new HolePunchClient({
        server: { address: LOOPBACK, port: server.port },
        bindAddress: LOOPBACK,
        punchBudgetMs,
        relay,
        dropDatagram: (_direction, peer) =>
          cut() && peer.port !== server.port && !isRelayPort(peer.port),
      }),
  );
  const outcomes = Promise.allSettled(
    clients.map((c, i) =>
      c.startTraversal({ session, isHost: i === 0, name: `p${i}`, timeoutMs: 15_000 }),
    ),
  );
  return { clients, outcomes };
}

const fulfilled = (outcomes: PromiseSettledResult<HolePunchResult>[]) =>
  outcomes.map((o) => {
    assert.equal(o.status, 'fulfilled', String(o.status === 'rejected' && o.reason));
    return (o as PromiseFulfilledResult<HolePunchResult>).value;
  });

describe('HolePunchClient through the transparent relay over loopback', () => {
  let server: RunningServer;
  const clients: HolePunchClient[] = [];

  before(async () => {
    server = await startServer({ port: 0, host: LOOPBACK, relayPorts: RELAY_PORTS });
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
  });

  it('peers that cannot reach each other play through a relay port by default, raw datagrams both ways', async () => {
    const pair = cutOffPair(server, true, 'relayed');
    clients.push(...pair.clients);
    const results = fulfilled(await pair.outcomes);
    const ports = new Set<number>();
    for (const r of results) {
      assert.equal(r.peers.length, 1);
      const peer = r.peers[0];
      assert.equal(peer?.path, 'relay');
      assert.equal(peer?.address, LOOPBACK, "the peer is at the relay's address");
      assert.ok(isRelayPort(peer?.port ?? 0), `relay port ${peer?.port}`);
      ports.add(peer?.port ?? 0);
      assert.ok(r.punchMs < 1_500, `relayed ${r.punchMs} ms after the peers`);
    }
    assert.equal(ports.size, 1, 'both sides send to the one port of the pair');
    const relayed = server.counters.datagramsRelayed;
    await gameTrafficFlows(pair.clients, results);
    assert.ok(
      server.counters.datagramsRelayed >= relayed + 2,
      'the game traffic went through the relay',
    );
    // Raw: a plain socket-level datagram of any size the game likes arrives byte for byte.
    const big = Buffer.alloc(1400, 0xab);
    const got = once(pair.clients[1] as HolePunchClient, 'message');
    const peer = results[0]?.peers[0];
    pair.clients[0]?.send(big, peer?.port ?? 0, peer?.address ?? '');
    const [data, rinfo] = (await got) as [Buffer, dgram.RemoteInfo];
    assert.deepEqual(data, big, 'unchanged, no header');
    assert.equal(rinfo.port, peer?.port, 'from the relay port the receiver sends to');
    assert.ok((server.core.v2.relay?.size ?? 0) >= 1, 'an allocation is open');
    assert.ok(server.counters.relayBytes >= 1400);
  });

  it('a direct path found later is reported with pathChanged, and send() moves to it', async () => {
    let cut = true;
    const pair = cutOffPair(server, true, 'upgraded', () => cut, 6_000);
    clients.push(...pair.clients);
    const results = fulfilled(await pair.outcomes);
    for (const r of results) assert.equal(r.peers[0]?.path, 'relay');
    const changed = pair.clients.map((c) => once(c, 'pathChanged'));
    cut = false;
    const events = (await Promise.all(changed)).map(([e]) => e as PathChangedEvent);
    for (const e of events) {
      assert.equal(e.previous.path, 'relay');
      assert.notEqual(e.peer.path, 'relay');
      assert.ok(!isRelayPort(e.peer.port));
    }
    // The game still addresses the relay endpoint; the client sends direct now.
    const relayedBefore = server.counters.datagramsRelayed;
    const got = once(pair.clients[1] as HolePunchClient, 'message');
    const peer = results[0]?.peers[0];
    pair.clients[0]?.send('moved', peer?.port ?? 0, peer?.address ?? '');
    const [data, rinfo] = (await got) as [Buffer, dgram.RemoteInfo];
    assert.equal(data.toString(), 'moved');
    assert.equal(rinfo.port, pair.clients[0]?.localPort, 'straight from the peer');
    assert.equal(server.counters.datagramsRelayed, relayedBefore);
  });

  it('without relay the same players fail with punch_failed', async () => {
    const pair = cutOffPair(server, false, 'direct-only');
    clients.push(...pair.clients);
    for (const o of await pair.outcomes) {
      assert.ok(o.status === 'rejected' && (o.reason as HolePunchError).code === 'punch_failed');
    }
  });
});
