import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { HolePunchClient, type HolePunchResult } from '../src/client/index.js';
import { type RunningServer, startServer } from '../src/server/shell.js';

const LOOPBACK = '127.0.0.1';
const WAIT_MS = 3_000;

/** One UDP client that records every datagram it sends and receives. */
async function openClient() {
  const socket = dgram.createSocket('udp4');
  const received: string[] = [];
  socket.on('message', (data) => received.push(data.toString('utf8')));
  await new Promise<void>((resolve) => socket.bind(0, LOOPBACK, resolve));
  const sent: string[] = [];
  let seen = 0;
  return {
    socket,
    received,
    sent,
    send(server: RunningServer, text: string): Promise<void> {
      sent.push(text);
      return new Promise((resolve, reject) =>
        socket.send(text, server.port, LOOPBACK, (error) => (error ? reject(error) : resolve())),
      );
    },
    /** Waits for the next datagram starting with `prefix` (past the ones already seen). */
    async waitFor(prefix: string): Promise<void> {
      const deadline = performance.now() + WAIT_MS;
      const found = () => received.slice(seen).findIndex((text) => text.startsWith(prefix));
      while (found() === -1 && performance.now() < deadline) await sleep(5);
      const index = found();
      assert.ok(index !== -1, `no ${prefix} in ${JSON.stringify(received.slice(seen))}`);
      seen += index + 1;
    },
  };
}

/** `name{labels} value` lines of a Prometheus text exposition, as a map. */
function parseExposition(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

async function scrape(server: RunningServer): Promise<Map<string, number>> {
  const metrics = server.metrics;
  assert.ok(metrics);
  const response = await fetch(`http://${LOOPBACK}:${metrics.port}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parseExposition(await response.text());
}

describe('metrics over HTTP (--metrics-port)', () => {
  const servers: RunningServer[] = [];
  const sockets: dgram.Socket[] = [];
  after(async () => {
    for (const socket of sockets) socket.close();
    await Promise.all(servers.map((server) => server.close()));
  });

  test('no metrics listener unless asked for', async () => {
    const server = await startServer({ port: 0, host: LOOPBACK });
    servers.push(server);
    assert.equal(server.metrics, undefined);
  });

  test('/metrics counts exactly the sessions, members, datagrams and bytes of the lobbies run; /healthz answers 200 while serving and the listener is gone after close', async () => {
    const server = await startServer({ port: 0, host: LOOPBACK, metricsPort: 0 });
    servers.push(server);
    assert.equal(server.metrics?.address, LOOPBACK, 'loopback by default');
    const health = await fetch(`http://${LOOPBACK}:${server.metrics?.port}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(await health.text(), 'ok\n');

    const [a, b, c, d] = await Promise.all([
      openClient(),
      openClient(),
      openClient(),
      openClient(),
    ]);
    sockets.push(a.socket, b.socket, c.socket, d.socket);
    // Session A: two players, autostart -> started.
    await a.send(server, 'rs:A:2');
    await a.waitFor('ok:');
    await a.send(server, 'rc:a:A:Ann');
    await a.waitFor('lobby:Ann:2');
    await b.send(server, 'rc:b:A:Bob');
    await b.waitFor('peers:');
    await a.waitFor('peers:');
    // Session B: one player, then the host closes it.
    await c.send(server, 'rs:B:3');
    await c.waitFor('ok:');
    await c.send(server, 'rc:c:B:Cat');
    await c.waitFor('lobby:Cat:3');
    await c.send(server, 'cs:B:bye');
    await c.waitFor('close:bye');
    // Session C: stays open with two members, one of which left again and rejoined.
    await d.send(server, 'rs:C:4');
    await d.waitFor('ok:');
    await d.send(server, 'rc:d:C:Dan');
    await d.waitFor('lobby:Dan:4');
    await b.send(server, 'rc:e:C:Eve');
    await d.waitFor('lobby:Dan,Eve:4');
    await b.send(server, 'cc:e');
    await d.waitFor('lobby:Dan:4');
    await b.send(server, 'rc:e:C:Eve');
    await d.waitFor('lobby:Dan,Eve:4');
    // Refused and dropped: no such session (a close: reply), an unknown type (no reply).
    await c.send(server, 'rc:x:nowhere:X');
    await c.waitFor('close:');
    await c.send(server, 'zz:1');

    const clients = [a, b, c, d];
    const sent = clients.flatMap((client) => client.sent);
    const deadline = performance.now() + WAIT_MS;
    while (server.counters.datagramsIn < sent.length && performance.now() < deadline) {
      await sleep(5);
    }
    // Every reply the server sent has arrived (loopback drops nothing at this rate).
    while (
      clients.reduce((sum, client) => sum + client.received.length, 0) <
        server.counters.datagramsOut &&
      performance.now() < deadline
    ) {
      await sleep(5);
    }
    const received = clients.flatMap((client) => client.received);
    const bytes = (texts: string[]) => texts.reduce((sum, t) => sum + Buffer.byteLength(t), 0);

    const values = await scrape(server);
    const expected: Record<string, number> = {
      holepunch_datagrams_received_total: sent.length,
      holepunch_bytes_received_total: bytes(sent),
      holepunch_datagrams_sent_total: received.length,
      holepunch_bytes_sent_total: bytes(received),
      holepunch_datagrams_relayed_total: 0,
      holepunch_sessions_created_total: 3,
      'holepunch_sessions_ended_total{how="started"}': 1,
      'holepunch_sessions_ended_total{how="closed"}': 1,
      'holepunch_sessions_ended_total{how="expired"}': 0,
      'holepunch_sessions_open{protocol="legacy"}': 1,
      'holepunch_sessions_open{protocol="v2"}': 0,
      'holepunch_members{protocol="legacy"}': 2,
      'holepunch_rejections_total{kind="session_not_found"}': 1,
      'holepunch_rejections_total{kind="unknown_type"}': 1,
    };
    for (const [name, value] of Object.entries(expected)) {
      assert.equal(values.get(name), value, name);
    }
    assert.equal(server.counters.bytesIn, bytes(sent));
    assert.equal(server.counters.bytesOut, bytes(received));
    assert.ok((values.get('process_resident_memory_bytes') ?? 0) > 0, 'process metrics too');

    const missing = await fetch(`http://${LOOPBACK}:${server.metrics?.port}/nothing`);
    assert.equal(missing.status, 404);
    await missing.text();

    const port = server.metrics?.port;
    await server.close();
    await assert.rejects(fetch(`http://${LOOPBACK}:${port}/healthz`), 'listener closed');
  });

  test('the relay and the v2 table: allocations open, datagrams and bytes relayed, sessions by state and members match a relayed pair and a waiting lobby', async () => {
    const relayLow = 22_000 + (process.pid % 400) * 20;
    const isRelay = (p: number) => p >= relayLow && p <= relayLow + 19;
    const server = await startServer({
      port: 0,
      host: LOOPBACK,
      metricsPort: 0,
      relayPorts: { low: relayLow, high: relayLow + 19 },
    });
    servers.push(server);
    const before = await scrape(server);
    assert.equal(before.get('holepunch_relay_allocations'), 0);
    assert.equal(before.get('holepunch_relay_bytes_total'), 0);
    assert.equal(before.get('holepunch_v2_sessions{state="waiting"}'), 0);
    assert.equal(before.get('holepunch_members{protocol="v2"}'), 0);

    // A pair that never hears each other directly (as in test/client-loopback.test.ts).
    const server0 = { address: LOOPBACK, port: server.port };
    const pair = [0, 1].map(
      () =>
        new HolePunchClient({
          server: server0,
          bindAddress: LOOPBACK,
          punchBudgetMs: 400,
          dropDatagram: (_direction, peer) => peer.port !== server.port && !isRelay(peer.port),
        }),
    );
    const waiting = new HolePunchClient({ server: server0, bindAddress: LOOPBACK });
    try {
      const results: HolePunchResult[] = await Promise.all(
        pair.map((c, i) =>
          c.startTraversal({ session: 'm', isHost: i === 0, name: `p${i}`, timeoutMs: 10_000 }),
        ),
      );
      for (const r of results) assert.equal(r.peers[0]?.path, 'relay');
      // A host alone in its lobby, waiting for a second player.
      const lobby = waiting.startTraversal({
        session: 'w',
        isHost: true,
        name: 'h',
        maxPlayers: 2,
      });
      lobby.catch(() => {});
      await new Promise((resolve) => waiting.once('sessionRegistered', resolve));
      // Game traffic through the relay: 5 datagrams of 100 bytes.
      const relayed = server.counters.datagramsRelayed;
      const relayBytes = server.counters.relayBytes;
      let got = 0;
      pair[1]?.on('message', () => got++);
      const peer = results[0]?.peers[0];
      for (let i = 0; i < 5; i++) pair[0]?.send(Buffer.alloc(100, i), peer?.port ?? 0, LOOPBACK);
      const deadline = performance.now() + WAIT_MS;
      while (
        (got < 5 || server.core.v2.startedCount > 0 || server.core.v2.memberCount > 1) &&
        performance.now() < deadline
      ) {
        await sleep(10);
      }
      assert.equal(got, 5, 'the game datagrams arrived');
      assert.ok(server.counters.datagramsRelayed >= relayed + 5);
      assert.ok(server.counters.relayBytes >= relayBytes + 500);
      const low = { ...server.counters };
      const values = await scrape(server);
      const high = { ...server.counters };
      const within = (name: string, a: number, b: number) => {
        const v = values.get(name) ?? Number.NaN;
        assert.ok(v >= a && v <= b, `${name} ${v} within ${a}..${b}`);
      };
      within('holepunch_datagrams_relayed_total', low.datagramsRelayed, high.datagramsRelayed);
      within('holepunch_relay_bytes_total', low.relayBytes, high.relayBytes);
      assert.equal(values.get('holepunch_relay_allocations'), 1, 'one port for the pair');
      assert.equal(values.get('holepunch_v2_sessions{state="waiting"}'), 1);
      assert.equal(values.get('holepunch_v2_sessions{state="started"}'), 0, 'acked and forgotten');
      assert.equal(values.get('holepunch_sessions_open{protocol="v2"}'), 1);
      assert.equal(values.get('holepunch_members{protocol="v2"}'), 1, 'the waiting host');
    } finally {
      await Promise.all([...pair, waiting].map((c) => c.close()));
    }
    const gone = performance.now() + WAIT_MS;
    while (server.core.v2.sessionCount > 0 && performance.now() < gone) await sleep(10);
    const afterClose = await scrape(server);
    assert.equal(afterClose.get('holepunch_v2_sessions{state="waiting"}'), 0, 'the host left');
    assert.equal(afterClose.get('holepunch_members{protocol="v2"}'), 0);
  });

  test('a taken metrics port fails startup and releases the UDP socket', async () => {
    const first = await startServer({ port: 0, host: LOOPBACK, metricsPort: 0 });
    servers.push(first);
    await assert.rejects(
      startServer({ port: 0, host: LOOPBACK, metricsPort: first.metrics?.port as number }),
      /EADDRINUSE/,
    );
  });
});
