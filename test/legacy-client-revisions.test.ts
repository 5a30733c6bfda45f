/**
 * The three released plugins (seed original/) modelled by LegacyClientState, driven together
 * with the server core (LegacySessions) over a tiny in-memory network on a fake clock. Each
 * client has its own IP; every socket it opens gets a new port, like a NAT mapping, so the
 * plugins' socket switch (`rs` from one socket, `rc`/`ep`/`cs`/`cc` from another) shows.
 * The expectations are what the ORIGINAL Python server (Server.py of each revision) gives
 * each client, unless a comment says where our server deliberately differs.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type LegacyClientConfig,
  type LegacyClientEvent,
  LegacyClientState,
  type LegacyRevision,
} from '../src/client-legacy/index.js';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { createCounters } from '../src/server/counters.js';
import { LegacySessions } from '../src/server/legacy-sessions.js';

const SERVER: Endpoint = { address: '203.0.113.10', port: 4000 };
/** One way, every hop. */
const LATENCY_MS = 1;
/** Ephemeral ports handed to each new socket of a client (a fresh NAT mapping each). */
const FIRST_EPHEMERAL = 50_000;

const text = (data: Uint8Array) => new TextDecoder().decode(data);
const same = (a: Endpoint, b: Endpoint) => a.address === b.address && a.port === b.port;

interface Datagram {
  readonly at: number;
  readonly from: Endpoint;
  readonly to: Endpoint;
  readonly data: Uint8Array;
}

class SimClient {
  readonly state: LegacyClientState;
  readonly ip: string;
  /** The port of the one open socket (the plugins' flow has one at a time). */
  port: number;
  private nextPort = FIRST_EPHEMERAL;
  /** Every server datagram that reached an open socket of this client, as text. */
  readonly inbox: string[] = [];
  /** Every datagram this client sent to the server: the local (= public) port and text. */
  readonly toServer: { port: number; text: string }[] = [];
  readonly events: LegacyClientEvent[] = [];

  constructor(config: LegacyClientConfig, ip: string) {
    this.state = new LegacyClientState(config);
    this.ip = ip;
    // The plugins bind their server socket to the server's port number.
    this.port = SERVER.port;
  }

  get endpoint(): Endpoint {
    return { address: this.ip, port: this.port };
  }

  /** Ports this client sent `prefix...` from, in order. */
  portsOf(prefix: string): number[] {
    return this.toServer.filter((s) => s.text.startsWith(prefix)).map((s) => s.port);
  }

  texts(): string[] {
    return this.toServer.map((s) => s.text);
  }

  last(): LegacyClientEvent | undefined {
    return this.events.at(-1);
  }

  drain(net: Net): void {
    for (let action = this.state.poll(); action !== undefined; action = this.state.poll()) {
      switch (action.type) {
        case 'send':
          if (same(action.to, SERVER))
            this.toServer.push({ port: this.port, text: text(action.data) });
          net.queue.push({
            at: net.now + LATENCY_MS,
            from: this.endpoint,
            to: action.to,
            data: action.data,
          });
          break;
        case 'bind':
          // Port 0 is the plugins' socket switch: a new ephemeral port.
          this.port = action.port === 0 ? this.nextPort++ : action.port;
          break;
        case 'unbind':
          break;
        case 'event':
          this.events.push(action.event);
          break;
      }
    }
  }
}

class Net {
  now = 0;
  queue: Datagram[] = [];
  readonly server: LegacySessions;
  readonly clients: SimClient[] = [];
  private nextIp = 11;

  constructor(autostart: boolean) {
    this.server = new LegacySessions({
      outbox: {
        send: (to, data) => {
          this.queue.push({ at: this.now + LATENCY_MS, from: SERVER, to, data });
        },
      },
      counters: createCounters(),
      autostart,
    });
  }

  client(
    revision: LegacyRevision,
    role: 'host' | 'join',
    name: string,
    options: { nickname?: string; maxPlayers?: number } = {},
  ): SimClient {
    const c = new SimClient(
      {
        revision,
        role,
        name,
        session: 'game',
        nickname: options.nickname ?? name.toUpperCase(),
        maxPlayers: options.maxPlayers ?? 2,
        server: SERVER,
      },
      `198.51.100.${this.nextIp++}`,
    );
    this.clients.push(c);
    return c;
  }

  /** Runs the network and every timer up to `until`, then sets the clock there. */
  runUntil(until: number): void {
    for (let guard = 0; guard < 100_000; guard++) {
      for (const c of this.clients) c.drain(this);
      const next = Math.min(
        ...this.queue.map((d) => d.at),
        ...this.clients.map((c) => c.state.nextDeadline()),
      );
      if (next > until) break;
      this.now = Math.max(this.now, next);
      const due = this.queue.filter((d) => d.at <= this.now);
      this.queue = this.queue.filter((d) => d.at > this.now);
      for (const d of due) this.deliver(d);
      for (const c of this.clients) {
        c.drain(this);
        if (c.state.nextDeadline() <= this.now) c.state.handleTimeout(this.now);
      }
    }
    this.now = until;
    for (const c of this.clients) c.drain(this);
  }

  /** Runs `action` at `at` (after everything due before it). */
  at(at: number, action: () => void): void {
    this.runUntil(at);
    action();
    for (const c of this.clients) c.drain(this);
  }

  private deliver(d: Datagram): void {
    if (same(d.to, SERVER)) {
      this.server.handle(this.now, d.from, d.data);
      return;
    }
    // A datagram to a closed socket (or a finished client) is lost, as on a real host.
    const c = this.clients.find((x) => x.ip === d.to.address && x.port === d.to.port);
    if (c === undefined || c.state.finished) return;
    if (same(d.from, SERVER)) c.inbox.push(text(d.data));
    c.state.handle(this.now, d.from, d.data);
    c.drain(this);
  }
}

/** `peers:` entries as the earlier revision's three fields (NAME:IP:PORT), HOSTING dropped. */
const peersOf = (c: SimClient): string[][] =>
  c.inbox
    .filter((t) => t.startsWith('peers:'))
    .map((t) => {
      const body = t.slice('peers:'.length);
      return body === '' ? [] : body.split(',').map((e) => e.split(':').slice(0, 3).join(':'));
    });
/** The HOSTING field of each `peers:` entry (the later revision's fourth field), by name. */
const hostingOf = (c: SimClient): Record<string, string | undefined> => {
  const out: Record<string, string | undefined> = {};
  for (const t of c.inbox.filter((x) => x.startsWith('peers:'))) {
    for (const e of t.slice('peers:'.length).split(',')) {
      const [name, , , hosting] = e.split(':');
      if (name) out[name] = hosting;
    }
  }
  return out;
};
const lobbiesOf = (c: SimClient) => c.inbox.filter((t) => t.startsWith('lobby:'));
const punched = (c: SimClient) => {
  const e = c.last();
  assert.equal(e?.event, 'punched', `${c.ip} punched (last event: ${JSON.stringify(e)})`);
  return e as Extract<LegacyClientEvent, { event: 'punched' }>;
};
/** The port a client sent its `rc` from: what the server observed, so what peers must use. */
const rcPort = (c: SimClient) => {
  const port = c.portsOf('rc:')[0];
  assert.ok(port !== undefined, `${c.ip} sent rc`);
  return port;
};

/** Host at 0; joiners at 10 ms steps, so the host's `rc` (2 s after its ok:) lands first. */
function lobbyOf(
  net: Net,
  revision: LegacyRevision,
  joiners: readonly string[],
  options: { maxPlayers?: number } = {},
) {
  const host = net.client(revision, 'host', 'alice', options);
  const others = joiners.map((n) => net.client(revision, 'join', n, options));
  net.at(0, () => host.state.start(net.now));
  others.forEach((j, i) => {
    net.at(10 * (i + 1), () => j.state.start(net.now));
  });
  return { host, others };
}

describe('legacy client revisions against the server core (in-memory network)', () => {
  it('the socket switch: rs from the bound socket (lobby) or a fresh one (master), rc from another, 2 s after ok:', () => {
    for (const revision of ['godot3-lobby', 'godot3-master', 'godot4-master'] as const) {
      const net = new Net(false);
      const { host, others } = lobbyOf(net, revision, ['bob'], { maxPlayers: 3 });
      const [bob] = others as [SimClient];
      net.runUntil(3_000);
      const rsPort = host.portsOf('rs:')[0];
      assert.equal(rsPort, revision === 'godot3-lobby' ? 4000 : FIRST_EPHEMERAL, revision);
      assert.notEqual(rcPort(host), rsPort, `${revision}: the host's rc leaves from a new socket`);
      assert.notEqual(rcPort(bob), 4000, `${revision}: the joiner's rc leaves from a new socket`);
      // The original answers rc with ok:PORT, PORT being the rc socket's: the plugin keeps it.
      assert.ok(host.inbox.includes(`ok:${rcPort(host)}`), `${revision}: ${host.inbox}`);
      assert.ok(bob.inbox.includes(`ok:${rcPort(bob)}`), `${revision}: ${bob.inbox}`);
    }
  });

  it('godot3-lobby, autostart y: lobby fills, both get peers: with the rc ports, HOSTING marks the host by IP, both punch', () => {
    const net = new Net(true);
    const { host, others } = lobbyOf(net, 'godot3-lobby', ['bob']);
    const [bob] = others as [SimClient];
    net.runUntil(6_000);
    assert.deepEqual(host.texts().slice(0, 2), ['rs:game:2', 'rc:alice:game:ALICE']);
    assert.deepEqual(bob.texts()[0], 'rc:bob:game:BOB');
    // Bob's rc fills the lobby: peers: at once and no full lobby, as the original's games saw
    // (it sent the lobby after peers:, to closed sockets).
    assert.deepEqual(lobbiesOf(bob), []);
    assert.deepEqual(lobbiesOf(host), ['lobby:ALICE:2']);
    assert.deepEqual(peersOf(host), [[`bob:${bob.ip}:${rcPort(bob)}`]]);
    assert.deepEqual(peersOf(bob), [[`alice:${host.ip}:${rcPort(host)}`]]);
    // The later revision's HOSTING: True for the member whose IP is the host's (the rs
    // sender's IP); the host's rc came from another port than its rs.
    assert.deepEqual(hostingOf(bob), { alice: 'True' });
    assert.deepEqual(hostingOf(host), { bob: 'False' });
    const b = punched(bob);
    assert.deepEqual(b.peers, [
      { name: 'alice', address: host.ip, port: rcPort(host), path: 'public', isHost: true },
    ]);
    assert.equal(punched(host).peers[0]?.port, rcPort(bob));
  });

  for (const revision of ['godot3-lobby', 'godot3-master', 'godot4-master'] as const) {
    it(`${revision}, autostart n: finalize_peers (ep from the host's switched socket) starts the session`, () => {
      const net = new Net(false);
      const { host, others } = lobbyOf(net, revision, ['bob'], { maxPlayers: 3 });
      const [bob] = others as [SimClient];
      net.at(3_000, () => host.state.finalizePeers());
      net.runUntil(6_000);
      assert.deepEqual(host.portsOf('ep:'), [rcPort(host)], 'ep goes out from the rc socket');
      // The original server takes ep from anyone and sends peers: to every member.
      assert.deepEqual(peersOf(host), [[`bob:${bob.ip}:${rcPort(bob)}`]]);
      assert.deepEqual(peersOf(bob), [[`alice:${host.ip}:${rcPort(host)}`]]);
      if (revision === 'godot4-master') {
        for (const c of [host, bob]) {
          const e = c.last();
          assert.equal(e?.event === 'failed' && e.reason, 'peers_unparsable', JSON.stringify(e));
          assert.match(e?.event === 'failed' ? e.message : '', /right\(6\)/);
        }
      } else {
        assert.equal(punched(bob).peers[0]?.port, rcPort(host));
        assert.equal(punched(host).peers[0]?.port, rcPort(bob));
      }
    });
  }

  it('godot3-lobby: finalize_peers alone gets an empty peers: and fails with "No peers found." (cc from a fresh socket)', () => {
    const net = new Net(false);
    const { host } = lobbyOf(net, 'godot3-lobby', [], { maxPlayers: 3 });
    net.at(3_000, () => host.state.finalizePeers());
    net.runUntil(4_000);
    assert.deepEqual(peersOf(host), [[]]);
    assert.deepEqual(host.last(), {
      event: 'failed',
      code: 'session_closed',
      reason: 'no_peers',
      message: 'No peers found.',
    });
    // handle_failure: the server socket was just closed, so not cs but cc, from a new socket.
    assert.equal(host.texts().at(-1), 'cc:alice');
    assert.notEqual(host.portsOf('cc:')[0], rcPort(host));
  });

  it('godot3-master: an empty peers: is ignored and the plugin waits forever, sending nothing', () => {
    const net = new Net(false);
    const { host } = lobbyOf(net, 'godot3-master', [], { maxPlayers: 3 });
    net.at(3_000, () => host.state.finalizePeers());
    net.runUntil(4_000);
    assert.deepEqual(peersOf(host), [[]]);
    const e = host.last();
    assert.equal(e?.event === 'failed' && e.reason, 'no_peers');
    assert.deepEqual(host.texts(), ['rs:game:3', 'rc:alice:game', 'ep:game']);
  });

  it('godot3-lobby: client_disconnect sends cc:NAME from the rc socket; the host sees the lobby without the leaver', () => {
    const net = new Net(false);
    const { host, others } = lobbyOf(net, 'godot3-lobby', ['bob'], { maxPlayers: 3 });
    const [bob] = others as [SimClient];
    net.at(3_000, () => bob.state.clientDisconnect());
    net.runUntil(4_000);
    assert.deepEqual(bob.portsOf('cc:'), [rcPort(bob)]);
    assert.equal(bob.texts().at(-1), 'cc:bob');
    assert.deepEqual(bob.last(), {
      event: 'failed',
      code: 'aborted',
      reason: 'left',
      message: 'Client disconnected.',
    });
    assert.deepEqual(lobbiesOf(host), ['lobby:ALICE:3', 'lobby:ALICE,BOB:3', 'lobby:ALICE:3']);
    assert.equal(host.state.finished, false);
  });

  it('godot3-lobby: close_session sends cs from the host rc socket; the joiner gets close: and fails with its reason', () => {
    const net = new Net(false);
    const { host, others } = lobbyOf(net, 'godot3-lobby', ['bob'], { maxPlayers: 3 });
    const [bob] = others as [SimClient];
    net.at(3_000, () => host.state.closeSession());
    net.runUntil(4_000);
    assert.deepEqual(host.portsOf('cs:'), [rcPort(host)]);
    assert.equal(host.texts().at(-1), 'cs:game:Host preemptively closed session!');
    // The original honours cs from the first registered member's IP and tells every member.
    assert.deepEqual(bob.inbox.at(-1), 'close:Host preemptively closed session!');
    assert.deepEqual(bob.last(), {
      event: 'failed',
      code: 'session_closed',
      reason: 'server_closed',
      message: 'Disconnected: Host preemptively closed session!',
    });
    assert.equal(bob.texts().at(-1), 'cc:bob', 'handle_failure of a joiner checks out');
  });

  it('godot3-lobby: a host that leaves before start (client_disconnect) closes the session for everyone', () => {
    const net = new Net(false);
    const { host, others } = lobbyOf(net, 'godot3-lobby', ['bob', 'carol'], { maxPlayers: 4 });
    net.at(3_000, () => host.state.clientDisconnect());
    net.runUntil(4_000);
    // handle_failure: a host with an open server socket and an ok: sends cs, not cc.
    assert.equal(host.texts().at(-1), 'cs:game:Client disconnected.');
    for (const j of others) {
      assert.equal(j.inbox.at(-1), 'close:Client disconnected.', j.ip);
      const e = j.last();
      assert.equal(e?.event === 'failed' && e.message, 'Disconnected: Client disconnected.');
    }
  });

  it('godot3-master: a host that leaves before start can only checkout(); the joiner is told nothing it reads', () => {
    const net = new Net(false);
    const { host, others } = lobbyOf(net, 'godot3-master', ['bob'], { maxPlayers: 3 });
    const [bob] = others as [SimClient];
    assert.throws(() => host.state.closeSession(), /no close_session/);
    net.at(3_000, () => host.state.checkout());
    net.runUntil(4_000);
    assert.deepEqual(host.portsOf('cc:'), [rcPort(host)]);
    // The master server sends neither lobby: nor close:; the master plugin ignores both anyway.
    assert.equal(bob.state.finished, false);
    assert.deepEqual(bob.events, [{ event: 'registered', publicPort: rcPort(bob) }]);
  });

  it('godot3-lobby: a full session answers ok: then close:Session full; the refused client checks out', () => {
    const net = new Net(false);
    const { host, others } = lobbyOf(net, 'godot3-lobby', ['bob', 'carol']);
    const [bob, carol] = others as [SimClient, SimClient];
    net.runUntil(3_000);
    // ok: before the check, as the original; the reason in quotes, as its repr() made it.
    assert.deepEqual(carol.inbox.slice(-2), [`ok:${rcPort(carol)}`, "close:'Session full'"]);
    assert.deepEqual(carol.last(), {
      event: 'failed',
      code: 'session_closed',
      reason: 'server_closed',
      message: "Disconnected: 'Session full'",
    });
    assert.equal(carol.texts().at(-1), 'cc:carol');
    assert.deepEqual(lobbiesOf(host).at(-1), 'lobby:ALICE,BOB:2');
    assert.equal(bob.state.finished, false);
  });

  it('godot3-master: a refused client (session full) is never told: it waits, ignoring close:', () => {
    const net = new Net(false);
    const { others } = lobbyOf(net, 'godot3-master', ['bob', 'carol']);
    const carol = others[1] as SimClient;
    net.runUntil(3_000);
    assert.equal(carol.state.finished, false);
    assert.deepEqual(carol.texts(), ['rc:carol:game']);
    assert.equal(peersOf(carol).length, 0);
  });

  it('godot3-lobby: a duplicate name gets close:Client already registered', () => {
    const net = new Net(false);
    const host = net.client('godot3-lobby', 'host', 'alice', { maxPlayers: 3 });
    const bob = net.client('godot3-lobby', 'join', 'bob', { maxPlayers: 3 });
    const bob2 = net.client('godot3-lobby', 'join', 'bob', { maxPlayers: 3, nickname: 'OTHER' });
    net.at(0, () => host.state.start(net.now));
    net.at(10, () => bob.state.start(net.now));
    net.at(20, () => bob2.state.start(net.now));
    net.runUntil(3_000);
    assert.equal(bob2.inbox.at(-1), "close:'Client already registered'");
    assert.equal(bob2.last()?.event, 'failed');
    // The original honoured that refused client's cc:bob and so kicked the first bob; our
    // server only takes cc from the address that registered the name (a deliberate fix).
    assert.equal(bob.state.finished, false);
    assert.ok(!lobbiesOf(host).some((l) => l.includes('OTHER')));
  });

  it('master revisions register with three fields (rc:NAME:KEY) and the nickname is the NAME', () => {
    for (const revision of ['godot3-master', 'godot4-master'] as const) {
      const net = new Net(true);
      const { host, others } = lobbyOf(net, revision, ['bob']);
      const [bob] = others as [SimClient];
      net.runUntil(6_000);
      assert.deepEqual(host.texts().slice(0, 2), ['rs:game:2', 'rc:alice:game'], revision);
      assert.deepEqual(bob.texts()[0], 'rc:bob:game', revision);
      assert.ok(bob.inbox.includes(`ok:${rcPort(bob)}`), `${revision}: rc answered`);
      assert.deepEqual(peersOf(bob), [[`alice:${host.ip}:${rcPort(host)}`]], revision);
      assert.deepEqual(peersOf(host), [[`bob:${bob.ip}:${rcPort(bob)}`]], revision);
      if (revision === 'godot3-master') {
        assert.equal(punched(bob).peers[0]?.name, 'alice');
        assert.equal(punched(host).peers[0]?.name, 'bob');
      } else {
        const e = bob.last();
        assert.deepEqual(e?.event === 'failed' && [e.code, e.reason], [
          'bad_request',
          'peers_unparsable',
        ]);
        assert.equal(bob.texts().includes('goodbye'), false, 'the script error stops it');
      }
    }
  });

  it("godot3-lobby: a nickname containing ':' is cut at the ':' (the original reads field 3 only)", () => {
    const net = new Net(false);
    const host = net.client('godot3-lobby', 'host', 'alice', { maxPlayers: 3 });
    const bob = net.client('godot3-lobby', 'join', 'bob', { maxPlayers: 3, nickname: 'Bo:b' });
    net.at(0, () => host.state.start(net.now));
    net.at(10, () => bob.state.start(net.now));
    net.runUntil(3_000);
    assert.equal(bob.texts()[0], 'rc:bob:game:Bo:b', 'the plugin sends it unescaped');
    assert.ok(bob.inbox.includes(`ok:${rcPort(bob)}`));
    assert.deepEqual(lobbiesOf(host).at(-1), 'lobby:ALICE,Bo:3');
  });
});
