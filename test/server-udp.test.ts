import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { V2_MAGIC } from '../src/protocol/magic.js';
import { type RunningServer, type StartServerOptions, startServer } from '../src/server/shell.js';
import { unitTier } from './suites.js';

const REPLY_TIMEOUT_MS = 2_000;
const LOOPBACK = '127.0.0.1';

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`nothing within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A UDP socket on loopback that queues what it receives, as one game client. */
class TestClient {
  readonly socket: dgram.Socket;
  readonly address: string;
  readonly received: string[] = [];
  #wake: (() => void) | undefined;

  private constructor(socket: dgram.Socket, address: string) {
    this.socket = socket;
    this.address = address;
    socket.on('message', (data) => {
      this.received.push(data.toString('utf8'));
      this.#wake?.();
    });
  }

  /** A socket on `address` (any of 127.0.0.0/8: each is a source of its own to the server). */
  static open(address = LOOPBACK): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket('udp4');
      socket.once('error', reject);
      socket.bind(0, address, () => resolve(new TestClient(socket, address)));
    });
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(server: RunningServer, message: string | Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.send(message, server.port, LOOPBACK, (error) =>
        error ? reject(error) : resolve(),
      );
    });
  }

  /** The next datagram this client received, waiting at most `timeoutMs`. */
  async next(timeoutMs = REPLY_TIMEOUT_MS): Promise<string> {
    const deadline = performance.now() + timeoutMs;
    while (this.received.length === 0) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`port ${this.port}: no datagram within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
    return this.received.shift() as string;
  }

  /** Asserts that the next datagrams are exactly `expected`, in order. */
  async expect(...expected: string[]): Promise<void> {
    for (const message of expected) assert.equal(await this.next(), message);
  }

  /** Asserts that nothing arrives for `ms`. */
  async expectSilence(ms: number): Promise<void> {
    await sleep(ms);
    assert.deepEqual(this.received, []);
  }

  close(): void {
    this.socket.close();
  }
}

/** Opens a server and clients; `cleanup()` closes all of them, failure or not. */
function fixture() {
  const servers: RunningServer[] = [];
  const clients: TestClient[] = [];
  return {
    async server(options: StartServerOptions): Promise<RunningServer> {
      const server = await startServer({ port: 0, ...options });
      servers.push(server);
      return server;
    },
    async clients(count: number, address = LOOPBACK): Promise<TestClient[]> {
      const opened = await Promise.all(
        Array.from({ length: count }, () => TestClient.open(address)),
      );
      clients.push(...opened);
      return opened;
    },
    async cleanup(): Promise<void> {
      for (const client of clients) client.close();
      await Promise.all(servers.map((server) => server.close()));
    },
  };
}

/**
 * Runs a whole lobby as the Godot plugin does (host: rs, then rc; joiners: rc) and checks
 * every reply byte for byte, including `ok:` carrying each client's observed source port.
 */
async function runLobby(server: RunningServer, players: TestClient[], autostart: boolean) {
  const max = players.length;
  const key = `lobby-${max}-${autostart ? 'auto' : 'manual'}`;
  const [host] = players as [TestClient];
  await host.send(server, `rs:${key}:${max}`);
  await host.expect(`ok:${host.port}`);
  const nicks: string[] = [];
  for (let i = 0; i < max; i++) {
    const player = players[i] as TestClient;
    nicks.push(`Player ${i}`);
    await player.send(server, `rc:p${i}:${key}:Player ${i}`);
    await player.expect(`ok:${player.port}`);
    // The join that fills an autostarting session gets peers: at once (no full lobby first).
    if (autostart && i === max - 1) break;
    const lobby = `lobby:${nicks.join(',')}:${max}`;
    for (const member of players.slice(0, i + 1)) await member.expect(lobby);
  }
  if (!autostart) {
    await host.expectSilence(100);
    assert.equal(server.core.sessionCount, 1);
    await host.send(server, `ep:${key}`);
  }
  for (let i = 0; i < max; i++) {
    const others = players
      .map((p, j) => `p${j}:${p.address}:${p.port}:${j === 0 ? 'True' : 'False'}`)
      .filter((_, j) => j !== i);
    await (players[i] as TestClient).expect(`peers:${others.join(',')}`);
  }
  assert.equal(server.core.sessionCount, 0);
  const late = players[max - 1] as TestClient;
  await late.send(server, `rc:late:${key}:Late`);
  await late.expect(`ok:${late.port}`, "close:'Client registered for non-existing session'");
  for (const player of players) await player.send(server, 'goodbye');
}

describe('rendezvous server over real UDP on loopback', () => {
  const f = fixture();
  after(() => f.cleanup());

  for (const autostart of [true, false]) {
    test(`a 2-player lobby on the default dual-stack bind, autostart ${autostart ? 'on' : 'off'}: replies byte for byte, IPv4 in peers:`, async () => {
      const server = await f.server({ autostart });
      await runLobby(server, await f.clients(2), autostart);
      assert.equal(server.counters.rejections.internal_error, undefined);
    });

    test(`a 4-player lobby on 127.0.0.1, autostart ${autostart ? 'on' : 'off'}: replies byte for byte`, async () => {
      const server = await f.server({ autostart, host: LOOPBACK });
      await runLobby(server, await f.clients(4), autostart);
      assert.equal(server.counters.sessionsStarted, 1);
    });
  }

  test('a native IPv6 client is told the legacy protocol cannot carry its address', async (t) => {
    const server = await f.server({});
    if (server.family !== 'IPv6') {
      t.skip('no IPv6 on this machine: the server bound 0.0.0.0');
      return;
    }
    const socket = dgram.createSocket('udp6');
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(0, '::1', () => resolve());
      });
      const reply = once(socket, 'message');
      socket.send('rs:v6:2', server.port, '::1');
      const [data] = (await withTimeout(reply, REPLY_TIMEOUT_MS)) as [Buffer];
      assert.equal(data.toString(), "close:'IPv6 is not supported by the legacy protocol'");
      assert.equal(server.counters.rejections.ipv6_unsupported, 1);
    } finally {
      socket.close();
    }
  });

  test('while one session autostarts, a second session gets its rs and rc answered within 50 ms', async () => {
    const server = await f.server({ host: LOOPBACK });
    const [hostA, joinerA, hostB] = (await f.clients(3)) as [TestClient, TestClient, TestClient];
    await hostA.send(server, 'rs:A:2');
    await hostA.send(server, 'rc:a0:A:A0');
    await hostA.expect(`ok:${hostA.port}`, `ok:${hostA.port}`, 'lobby:A0:2');
    // The join that fills A and the registration of B leave back to back.
    const started = performance.now();
    await joinerA.send(server, 'rc:a1:A:A1');
    await hostB.send(server, 'rs:B:3');
    await hostB.expect(`ok:${hostB.port}`);
    await hostB.send(server, 'rc:b0:B:B0');
    await hostB.expect(`ok:${hostB.port}`, 'lobby:B0:3');
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 50, `session B waited ${elapsed.toFixed(1)} ms`);
    await hostA.expect(`peers:a1:${LOOPBACK}:${joinerA.port}:False`);
    await joinerA.expect(`ok:${joinerA.port}`);
    assert.equal(await joinerA.next(), `peers:a0:${LOOPBACK}:${hostA.port}:True`);
  });

  test('members of open sessions are told close:Server shutting down when the server closes', async () => {
    const server = await startServer({ port: 0, host: LOOPBACK });
    const [host, joiner] = (await f.clients(2)) as [TestClient, TestClient];
    try {
      await host.send(server, 'rs:S:4');
      await host.send(server, 'rc:h:S:H');
      await joiner.send(server, 'rc:j:S:J');
      await host.expect(`ok:${host.port}`, `ok:${host.port}`, 'lobby:H:4', 'lobby:H,J:4');
      await joiner.expect(`ok:${joiner.port}`, 'lobby:H,J:4');
    } finally {
      await server.close();
    }
    await host.expect('close:Server shutting down');
    await joiner.expect('close:Server shutting down');
    assert.equal(server.counters.sessionsClosed, 1);
  });

  test('a session expires after its TTL on the real clock and members get close:Session closed.', async () => {
    const server = await f.server({ host: LOOPBACK, sessionTtlMs: 150 });
    const [host] = (await f.clients(1)) as [TestClient];
    await host.send(server, 'rs:T:2');
    await host.send(server, 'rc:h:T:H');
    await host.expect(`ok:${host.port}`, `ok:${host.port}`, 'lobby:H:2');
    assert.equal(await host.next(1_000), 'close:Session closed.');
    assert.equal(server.counters.sessionsExpired, 1);
    assert.equal(server.core.sessionCount, 0);
  });
});

/**
 * Sends one UDP datagram to 127.0.0.1:`port` from source port 0, which only a raw socket can
 * forge (root). Node's dgram cannot; Python's socket module can, and is on every machine here.
 */
function sendFromPortZero(port: number, payload: string): void {
  const script = [
    'import socket, struct, sys',
    'port, data = int(sys.argv[1]), sys.argv[2].encode()',
    's = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)',
    // Checksum 0 means none for UDP over IPv4; the kernel writes the IP header.
    "s.sendto(struct.pack('!HHHH', 0, port, 8 + len(data), 0) + data, ('127.0.0.1', 0))",
  ].join('\n');
  execFileSync('python3', ['-c', script, String(port), payload], { timeout: 10_000 });
}

const isRoot = process.getuid?.() === 0;

describe('rendezvous server: a datagram from source port 0', () => {
  const f = fixture();
  after(() => f.cleanup());

  test('is dropped and counted; sessions still expire and the server keeps serving', {
    skip:
      unitTier() ||
      (!isRoot && process.env.CI !== 'true'
        ? 'forging source port 0 needs a raw socket (root)'
        : false),
  }, async () => {
    // Long enough to outlive starting python3 on a busy machine (it forges the datagram), short
    // enough to see the expiry that a half-registered member once froze.
    const server = await f.server({ host: LOOPBACK, sessionTtlMs: 3_000 });
    const [host, later] = (await f.clients(2)) as [TestClient, TestClient];
    await host.send(server, 'rs:Z:4');
    await host.expect(`ok:${host.port}`);
    sendFromPortZero(server.port, 'rc:z:Z:Z');
    // Once a source-port-0 datagram half-registered a member, every later send to the session
    // threw and its expiry froze every timer of the server.
    const deadline = performance.now() + REPLY_TIMEOUT_MS;
    while (server.counters.rejections.source_port_zero !== 1 && performance.now() < deadline) {
      await sleep(10);
    }
    assert.equal(server.counters.rejections.source_port_zero, 1);
    await host.send(server, 'rc:h:Z:H');
    await host.expect(`ok:${host.port}`, 'lobby:H:4');
    assert.equal(await host.next(5_000), 'close:Session closed.');
    assert.equal(server.core.nextDeadline(), Number.POSITIVE_INFINITY);
    await later.send(server, 'rs:Y:2');
    await later.expect(`ok:${later.port}`);
    assert.equal(server.counters.rejections.internal_error, undefined);
    assert.equal(server.counters.rejections.send_failed, undefined);
  });
});

describe('rendezvous server under a flood of malformed datagrams', () => {
  const f = fixture();
  let server: RunningServer;
  let flooders: TestClient[];
  const FLOOD_DATAGRAMS = 10_000;
  const FLOOD_BATCH = 100;
  const FLOOD_TIME_BUDGET_MS = 10_000;

  before(async () => {
    server = await f.server({ host: LOOPBACK });
    flooders = await f.clients(2);
  });
  after(() => f.cleanup());

  test('10,000 random and malformed datagrams are each counted, none breaks the server, then a normal lobby works', async () => {
    const junk = fc.oneof(
      fc.uint8Array({ maxLength: 1_200 }),
      fc.uint8Array({ maxLength: 60 }).map((tail) => Uint8Array.from([...V2_MAGIC, ...tail])),
      fc
        .tuple(
          fc.constantFrom('rs', 'rc', 'ep', 'cc', 'cs', 'goodbye', 'go', 'greet'),
          fc.array(fc.string({ unit: 'binary', maxLength: 12 }), { maxLength: 5 }),
        )
        .map(([type, fields]) => new TextEncoder().encode([type, ...fields].join(':'))),
    );
    const datagrams = fc.sample(junk, { numRuns: FLOOD_DATAGRAMS, seed: 20261125 });
    const startedAt = performance.now();
    for (let i = 0; i < datagrams.length; i += FLOOD_BATCH) {
      const batch = datagrams.slice(i, i + FLOOD_BATCH);
      await Promise.all(
        batch.map((data, j) => (flooders[j % flooders.length] as TestClient).send(server, data)),
      );
      // Let the server drain its receive buffer so the kernel drops (almost) nothing.
      const target = i + batch.length;
      while (
        server.counters.datagramsIn < target &&
        performance.now() - startedAt < FLOOD_TIME_BUDGET_MS
      ) {
        await sleep(1);
      }
    }
    const counters = server.counters;
    assert.ok(counters.datagramsIn >= FLOOD_DATAGRAMS * 0.99, `in: ${counters.datagramsIn}`);
    assert.equal(counters.rejections.internal_error, undefined);
    const rejected = Object.values(counters.rejections).reduce((a, b) => a + b, 0);
    assert.ok(rejected > FLOOD_DATAGRAMS / 2, `rejections: ${JSON.stringify(counters.rejections)}`);

    for (const client of flooders) client.received.length = 0;
    // The flooders' address spent its quotas (source_rate, source_quota): a lobby of players
    // at another address is served as before.
    await runLobby(server, await f.clients(3, '127.0.0.2'), true);
  });
});

describe('startServer: the alternate port NAT probes are answered from', () => {
  test('is there by default (beside port 0, any free port), announced as altPort; altPort 0 means none; an altPort that is taken is a socket_error', async () => {
    const server = await startServer({ port: 0, host: '127.0.0.1' });
    try {
      assert.ok(server.altPort > 0 && server.altPort !== server.port, String(server.altPort));
      assert.equal(server.core.settings.altPort, server.altPort, 'the core announces that port');
      await assert.rejects(
        startServer({ port: 0, host: '127.0.0.1', altPort: server.altPort }),
        (error: Error & { code?: string }) =>
          error.code === 'socket_error' && /alternate port/.test(error.message),
      );
    } finally {
      await server.close();
    }
    const none = await startServer({ port: 0, host: '127.0.0.1', altPort: 0 });
    try {
      assert.equal(none.altPort, 0);
      assert.equal(none.core.settings.altPort, 0);
    } finally {
      await none.close();
    }
  });
});
