import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
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

  test('a taken metrics port fails startup and releases the UDP socket', async () => {
    const first = await startServer({ port: 0, host: LOOPBACK, metricsPort: 0 });
    servers.push(first);
    await assert.rejects(
      startServer({ port: 0, host: LOOPBACK, metricsPort: first.metrics?.port as number }),
      /EADDRINUSE/,
    );
  });
});
