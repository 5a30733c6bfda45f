import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { HolePunchClient } from '../src/client/index.js';
import { HolePunchError } from '../src/errors.js';
import { type RunningServer, startServer } from '../src/server/shell.js';

const LOOPBACK = '127.0.0.1';
const WAIT_MS = 5_000;

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The traversal's rejection, checked to be a HolePunchError that `failed` reported too. */
async function failure(client: HolePunchClient, run: Promise<unknown>): Promise<HolePunchError> {
  const reported = once(client, 'failed');
  const error = await run.then(
    () => assert.fail('the traversal should have failed'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof HolePunchError, String(error));
  const [event] = (await within(reported, 1_000, 'failed event')) as [HolePunchError];
  assert.equal(event, error);
  return error;
}

describe('HolePunchClient: close() leaves and flushes; every failure is a HolePunchError', () => {
  let server: RunningServer;
  const clients: HolePunchClient[] = [];
  const client = (options: ConstructorParameters<typeof HolePunchClient>[0] = {}) => {
    const c = new HolePunchClient({
      server: { address: LOOPBACK, port: server.port },
      bindAddress: LOOPBACK,
      ...options,
    });
    clients.push(c);
    return c;
  };

  before(async () => {
    server = await startServer({ port: 0, host: LOOPBACK });
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
  });

  it('a datagram sent right before close() still arrives', async () => {
    const [a, b] = [client(), client()];
    const [ra] = await Promise.all([
      a.startTraversal({ session: 'flush', isHost: true, name: 'a' }),
      b.startTraversal({ session: 'flush', isHost: false, name: 'b' }),
    ]);
    const arrived = once(b, 'message');
    const peer = ra.peers[0];
    assert.ok(peer);
    a.send('last words', peer.port, peer.address);
    await a.close();
    const [data] = (await within(arrived, WAIT_MS, 'the last datagram')) as [Buffer];
    assert.equal(data.toString(), 'last words');
  });

  it('a player who closes in the lobby leaves it: the host sees the lobby without them', async () => {
    const host = client();
    const joiner = client();
    const lobbies: string[][] = [];
    host.on('lobbyUpdate', (l) => lobbies.push([...l.nicknames]));
    const hosting = host.startTraversal({
      session: 'leave',
      isHost: true,
      name: 'h',
      maxPlayers: 3,
    });
    hosting.catch(() => {});
    const joined = once(joiner, 'sessionRegistered');
    joiner.startTraversal({ session: 'leave', isHost: false, name: 'j' }).catch(() => {});
    await within(joined, WAIT_MS, 'join');
    const deadline = Date.now() + WAIT_MS;
    while (!lobbies.some((l) => l.length === 2) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await joiner.close();
    while (lobbies.at(-1)?.length !== 1 && Date.now() < deadline + WAIT_MS) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(lobbies.at(-1), ['h'], JSON.stringify(lobbies));
    await host.close();
  });

  it('a joiner that comes after the start is told at once that the game started without it', async () => {
    const [h, j] = [client(), client()];
    await Promise.all([
      h.startTraversal({ session: 'late', isHost: true, name: 'h' }),
      j.startTraversal({ session: 'late', isHost: false, name: 'j' }),
    ]);
    // From another address than the players of the started game: one of them would rather
    // be waiting for the next game under the name.
    const late = client({ bindAddress: '127.0.0.2' });
    const started = performance.now();
    const error = await failure(
      late,
      late.startTraversal({ session: 'late', isHost: false, name: 'l' }),
    );
    assert.equal(error.code, 'session_full');
    assert.match(error.message, /session "late" cannot take you: The session has already started/);
    assert.ok(performance.now() - started < 3_000, 'no waiting for a host that already started');
  });

  it('a server that never answers is server_unreachable, and says what to check', async () => {
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, LOOPBACK, () => resolve()));
    try {
      const c = new HolePunchClient({
        server: { address: LOOPBACK, port: silent.address().port },
        bindAddress: LOOPBACK,
      });
      clients.push(c);
      const error = await failure(
        c,
        c.startTraversal({ session: 's', isHost: true, name: 'h', timeoutMs: 1_500 }),
      );
      assert.equal(error.code, 'server_unreachable');
      assert.match(error.message, /no answer from the server .* UDP port is open/);
    } finally {
      silent.close();
    }
  });

  it('a server name that does not resolve is server_unreachable, not a raw DNS error', async () => {
    const c = new HolePunchClient({ server: { address: 'no-such-server.invalid', port: 4000 } });
    clients.push(c);
    const error = await within(
      failure(c, c.startTraversal({ session: 's', isHost: true, name: 'h' })),
      20_000,
      'the DNS failure',
    );
    assert.equal(error.code, 'server_unreachable');
    assert.match(error.message, /cannot resolve the server name no-such-server\.invalid/);
  });

  it('a local port that is taken is socket_error, saying so', async () => {
    const taken = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => taken.bind(0, LOOPBACK, () => resolve()));
    try {
      const c = client({ port: taken.address().port });
      const error = await failure(c, c.startTraversal({ session: 's', isHost: true, name: 'h' }));
      assert.equal(error.code, 'socket_error');
      assert.match(error.message, /another program uses it/);
    } finally {
      taken.close();
    }
  });
});
