import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import {
  exchangeGameDatagrams,
  LegacyClient,
  type LegacyPunchResult,
} from '../src/client-legacy/index.js';
import { type RunningServer, startServer } from '../src/server/index.js';

describe('legacy client against our server on loopback', () => {
  let server: RunningServer;
  const clients: LegacyClient[] = [];
  const results: LegacyPunchResult[] = [];

  before(async () => {
    server = await startServer({ port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const r of results) r.socket.close();
    await server.close();
  });

  it('a host and a joiner speaking the original protocol punch and exchange game datagrams both ways', async () => {
    const common = {
      session: 'loop',
      maxPlayers: 2,
      server: { address: '127.0.0.1', port: server.port },
      localPort: 0,
    };
    const host = new LegacyClient({ ...common, role: 'host', name: 'alice', nickname: 'Alice' });
    const joiner = new LegacyClient({ ...common, role: 'join', name: 'bob', nickname: 'Bob' });
    clients.push(host, joiner);
    const lobbies: unknown[] = [];
    joiner.on('event', (e: { event: string }) => {
      if (e.event === 'lobby') lobbies.push(e);
    });
    await Promise.all([host.start(), joiner.start()]);
    const [h, j] = await Promise.all([host.punched(), joiner.punched()]);
    results.push(h, j);
    assert.ok(j.event.elapsedMs >= 2_000, 'the joiner keeps the original 2 s registration delay');
    assert.equal(j.event.peers[0]?.name, 'alice');
    assert.equal(
      j.event.peers[0]?.port,
      h.event.localPort,
      'the joiner reaches the host on the port the host listens on',
    );
    // Host and joiner both send `rc` 2 s in (the host 2 s after its `ok:`), so either may
    // register first; the one that fills the lobby gets peers: at once, without a full lobby.
    for (const lobby of lobbies as { players: string[]; maxPlayers: number }[]) {
      assert.equal(lobby.maxPlayers, 2);
      assert.ok(lobby.players.length === 1, JSON.stringify(lobby));
    }
    const [fromHost, fromJoiner] = await Promise.all([
      exchangeGameDatagrams(h.socket, h.event.peers),
      exchangeGameDatagrams(j.socket, j.event.peers),
    ]);
    assert.ok((fromHost[0]?.received ?? 0) > 0, 'host got answers from the joiner');
    assert.ok((fromJoiner[0]?.received ?? 0) > 0, 'joiner got answers from the host');
  });

  it('start() rejects with the bind error when the server socket port is taken', async () => {
    const squatter = createSocket('udp4');
    await new Promise<void>((resolve) => squatter.bind(0, '127.0.0.1', resolve));
    try {
      const client = new LegacyClient({
        role: 'join',
        session: 'busy',
        name: 'erin',
        nickname: 'Erin',
        maxPlayers: 2,
        server: { address: '127.0.0.1', port: server.port },
        localPort: squatter.address().port,
        bindAddress: '127.0.0.1',
      });
      clients.push(client);
      await assert.rejects(client.start(), { code: 'EADDRINUSE' });
    } finally {
      squatter.close();
    }
  });

  it('godot3-master clients (three-field rc, rs from a fresh socket) punch through real sockets too', async () => {
    const common = {
      session: 'loop-master',
      maxPlayers: 2,
      server: { address: '127.0.0.1', port: server.port },
      localPort: 0,
      revision: 'godot3-master' as const,
    };
    const host = new LegacyClient({ ...common, role: 'host', name: 'carol', nickname: 'x' });
    const joiner = new LegacyClient({ ...common, role: 'join', name: 'dave', nickname: 'x' });
    clients.push(host, joiner);
    await Promise.all([host.start(), joiner.start()]);
    const [h, j] = await Promise.all([host.punched(), joiner.punched()]);
    results.push(h, j);
    assert.equal(j.event.peers[0]?.name, 'carol');
    assert.equal(h.event.peers[0]?.name, 'dave');
    assert.equal(j.event.peers[0]?.port, h.event.localPort);
  });
});
