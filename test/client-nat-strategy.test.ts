import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BIRTHDAY_CANDIDATE,
  BIRTHDAY_HARD_ROUNDS,
  BIRTHDAY_PROBE_BUDGET,
  BIRTHDAY_PROBE_RATE,
  BIRTHDAY_SOCKETS,
  PUNCH_LINGER_MS,
  PunchAttempt,
  SWEEP_EVERY_ROUNDS,
  SWEEP_PORT_RANGE,
} from '../src/client/punch.js';
import type { TraversalEvent } from '../src/client/traversal.js';
import {
  BIRTHDAY_RELAY_DELAY_MS,
  CLASSIFY_MAX_PROBES,
  CLASSIFY_WITHIN_MS,
  COLLIDE_WAIT_MAX_MS,
  natClassOf,
  peerStrategy,
  SEQUENTIAL_PORT_DELTA,
  SEQUENTIAL_RELAY_DELAY_MS,
  Traversal,
} from '../src/client/traversal.js';
import { drain, type Work } from '../src/core/contract.js';
import type { Endpoint } from '../src/protocol/endpoint.js';
import {
  decodeV2,
  encodePunch,
  encodeV2,
  type NatClass,
  type V2Message,
  type V2Peer,
} from '../src/protocol/v2.js';
import { seededRandom } from '../src/sim/random.js';

const SERVER: Endpoint = { address: '203.0.113.1', port: 4000 };
const ALT_PORT = 4001;
const KEY = new Uint8Array(16).fill(7);
const TOKEN = new Uint8Array(16).fill(9);

type W = Work<TraversalEvent>;
const sends = (work: W[]) =>
  work.flatMap((w) => {
    if (w.type !== 'send') return [];
    const d = decodeV2(w.data);
    return d.ok ? [{ to: w.to, socket: w.socket ?? 0, msg: d.msg }] : [];
  });

function traversal(isHost = false) {
  return new Traversal({
    server: SERVER,
    session: 's',
    isHost,
    name: isHost ? 'h' : 'j',
    nickname: '',
    maxPlayers: 2,
    localCandidates: [],
    random: seededRandom(3),
    classifyNat: true,
  });
}

/** Answers the classification probes: our mapping is `mainPort` to the main port, `altPort` to the other. */
function classify(t: Traversal, now: number, mainPort: number, altPort: number): W[] {
  const first = sends(drain(t)).find((s) => s.msg.type === 'probe');
  assert.ok(first, 'the first datagram is a probe');
  assert.deepEqual(first.to, SERVER);
  const reply = (requestId: number, port: number) =>
    encodeV2({
      type: 'probe_reply',
      requestId,
      observed: { address: '198.51.100.7', port },
      altAddress: '',
      altPort: ALT_PORT,
    });
  t.handle(now, SERVER, reply(first.msg.requestId, mainPort));
  const provoke = sends(drain(t)).find((s) => s.msg.type === 'probe');
  assert.ok(
    provoke?.msg.type === 'probe' && provoke.msg.changePort && !provoke.msg.changeAddress,
    'then the server is asked to answer from its alternate port, unasked by our NAT',
  );
  assert.deepEqual(provoke.to, SERVER);
  // The probe to the alternate port waits for that answer to reach our NAT first.
  const altAt = t.nextDeadline();
  assert.ok(altAt > now && altAt <= now + COLLIDE_WAIT_MAX_MS, `alternate probe at ${altAt}`);
  t.handleTimeout(altAt - 1);
  assert.ok(!sends(drain(t)).some((s) => s.msg.type === 'probe'), 'not before');
  t.handleTimeout(altAt);
  const second = sends(drain(t)).find((s) => s.msg.type === 'probe');
  assert.ok(second, 'then a probe to the alternate port');
  const alt = { address: SERVER.address, port: ALT_PORT };
  assert.deepEqual(second.to, alt);
  t.handle(altAt, alt, reply(second.msg.requestId, altPort));
  return drain(t);
}

/** When `toPeers` hands over the peer list: after any classification (at most 5 + 150 ms). */
const PEERS_AT = 200;

function registerMsg(work: W[]): Extract<V2Message, { type: 'host' | 'join' }> {
  const reg = sends(work).find((s) => s.msg.type === 'host' || s.msg.type === 'join')?.msg;
  assert.ok(reg?.type === 'host' || reg?.type === 'join', 'registers once classified');
  if (reg?.type !== 'host' && reg?.type !== 'join') throw new Error('unreachable');
  return reg;
}

/** Classifies, registers, and hands `t` the peer list with one peer of class `nat`. */
function toPeers(t: Traversal, mainPort: number, altPort: number, nat: NatClass): W[] {
  t.start(0);
  const reg = registerMsg(classify(t, 5, mainPort, altPort));
  t.handle(
    PEERS_AT - 10,
    SERVER,
    encodeV2({
      type: 'registered',
      requestId: reg.requestId,
      token: TOKEN,
      observed: { address: '198.51.100.7', port: mainPort },
    }),
  );
  drain(t);
  const peer: V2Peer = {
    name: 'h',
    nickname: '',
    isHost: true,
    publicEndpoint: { address: '192.0.2.9', port: 5555 },
    candidates: [],
    ...(nat === 'unknown' ? {} : { nat }),
  };
  t.handle(
    PEERS_AT,
    SERVER,
    encodeV2({
      type: 'peers',
      requestId: 0,
      punchKey: KEY,
      token: TOKEN,
      observed: { address: '198.51.100.7', port: mainPort },
      total: 1,
      first: 0,
      peers: [peer],
    }),
  );
  return drain(t);
}

describe('NAT classes and the strategy they choose', () => {
  it('classifies by the two public ports: same eim, close edm-sequential, else edm-random', () => {
    assert.equal(natClassOf(5000, 5000), 'eim');
    assert.equal(natClassOf(5000, 5016), 'edm-sequential');
    assert.equal(natClassOf(5000, 4990), 'edm-sequential');
    assert.equal(natClassOf(5000, 31000), 'edm-random');
  });

  it('picks punch, birthday or the relay from both classes and the session size', () => {
    assert.equal(peerStrategy('eim', 'eim', 1), 'punch');
    assert.equal(
      peerStrategy('unknown', 'edm-random', 1),
      'birthday-easy',
      'unknown as easy against a random-port side',
    );
    assert.equal(peerStrategy('edm-random', 'unknown', 1), 'birthday-hard');
    assert.equal(peerStrategy('unknown', 'edm-random', 2), 'punch', 'two players only');
    assert.equal(peerStrategy('edm-random', 'unknown', 2), 'punch');
    assert.equal(peerStrategy('unknown', 'unknown', 1), 'punch');
    assert.equal(peerStrategy('edm-sequential', 'eim', 1), 'sequential-hard');
    assert.equal(peerStrategy('eim', 'edm-sequential', 1), 'sequential-easy');
    assert.equal(peerStrategy('eim', 'edm-sequential', 3), 'sequential-easy', 'any session size');
    assert.equal(peerStrategy('edm-sequential', 'edm-sequential', 1), 'punch');
    assert.equal(
      peerStrategy('unknown', 'edm-sequential', 1),
      'sequential-easy',
      'unknown as easy',
    );
    assert.equal(peerStrategy('edm-sequential', 'unknown', 1), 'sequential-hard');
    assert.equal(peerStrategy('unknown', 'eim', 1), 'punch');
    assert.equal(peerStrategy('eim', 'edm-random', 1), 'birthday-easy');
    assert.equal(peerStrategy('edm-random', 'eim', 1), 'birthday-hard');
    assert.equal(peerStrategy('edm-random', 'edm-random', 1), 'relay');
    assert.equal(peerStrategy('edm-sequential', 'edm-random', 1), 'relay');
    assert.equal(
      peerStrategy('eim', 'edm-random', 2),
      'relay',
      'birthday in two-player sessions only',
    );
  });

  it('probes the main then the alternate port and sends the class in join', () => {
    const t = traversal();
    t.start(0);
    const reg = registerMsg(classify(t, 1, 40000, 40000));
    assert.equal(reg.nat, 'eim');
    assert.equal(t.nat, 'eim');
    const t2 = traversal(true);
    t2.start(0);
    assert.equal(registerMsg(classify(t2, 1, 40000, 12345)).nat, 'edm-random');
  });

  it('without an answer registers as unknown within the bound, with a bounded number of probes', () => {
    const t = traversal();
    t.start(0);
    let probes = 0;
    let reg: V2Message | undefined;
    for (let now = 0; now <= CLASSIFY_WITHIN_MS + 50 && reg === undefined; now += 5) {
      t.handleTimeout(now);
      for (const s of sends(drain(t))) {
        if (s.msg.type === 'probe') probes++;
        if (s.msg.type === 'join') reg = s.msg;
      }
    }
    assert.ok(reg?.type === 'join', `registered by ${CLASSIFY_WITHIN_MS} ms`);
    if (reg?.type === 'join') assert.equal(reg.nat, undefined, 'unknown');
    assert.ok(probes >= 2 && probes <= CLASSIFY_MAX_PROBES, `${probes} probes`);
  });

  it('two random-port sides ask the relay at once', () => {
    const t = traversal();
    const work = toPeers(t, 40000, 12345, 'edm-random');
    assert.equal(t.strategies.get('h'), 'relay');
    assert.ok(
      sends(work).some((s) => s.msg.type === 'relay_allocate'),
      'relay_allocate at once',
    );
  });

  it('the easy side probes random ports within the documented rate and budget', () => {
    const sent: { to: Endpoint; candidate: number }[] = [];
    const punch = new PunchAttempt({
      selfName: 'j',
      punchKey: KEY,
      peers: [
        {
          name: 'h',
          nickname: '',
          isHost: true,
          publicEndpoint: { address: '192.0.2.9', port: 5555 },
          candidates: [],
          nat: 'edm-random',
        },
      ],
      now: 0,
      budgetMs: 20_000,
      random: seededRandom(5),
      send: (to, data) => {
        const d = decodeV2(data);
        if (d.ok && d.msg.type === 'punch') sent.push({ to, candidate: d.msg.candidate });
      },
    });
    punch.startBirthdayEasy(0, 'h');
    let maxPerSecond = 0;
    for (let now = 0; now <= 10_000; now += 5) {
      const before = punch.birthdayProbes;
      punch.handleTimeout(now);
      if (now === 1000) maxPerSecond = punch.birthdayProbes;
      assert.ok(punch.birthdayProbes - before <= 20, 'small batches');
    }
    assert.ok(
      maxPerSecond <= BIRTHDAY_PROBE_RATE + 10,
      `${maxPerSecond} probes in the first second`,
    );
    assert.equal(punch.birthdayProbes, BIRTHDAY_PROBE_BUDGET, 'the budget, then no more');
    const probes = sent.filter((s) => s.candidate === BIRTHDAY_CANDIDATE);
    assert.equal(probes.length, BIRTHDAY_PROBE_BUDGET);
    assert.ok(probes.every((p) => p.to.address === '192.0.2.9' && p.to.port >= 1024));
    assert.ok(new Set(probes.map((p) => p.to.port)).size > 3500, 'random ports');
  });

  it('an ack to a birthday probe confirms the peer with path birthday', () => {
    const punch = new PunchAttempt({
      selfName: 'j',
      punchKey: KEY,
      peers: [
        {
          name: 'h',
          nickname: '',
          isHost: true,
          publicEndpoint: { address: '192.0.2.9', port: 5555 },
          candidates: [],
        },
      ],
      now: 0,
      send: () => {},
    });
    punch.startBirthdayEasy(0, 'h');
    const ack = decodeV2(
      encodePunch(KEY, {
        type: 'punch_ack',
        requestId: 1,
        from: 'h',
        to: 'j',
        candidate: BIRTHDAY_CANDIDATE,
        sentAt: 0,
      }),
    );
    assert.ok(ack.ok && ack.msg.type === 'punch_ack');
    if (!ack.ok || ack.msg.type !== 'punch_ack') return;
    assert.ok(punch.handle(30, { address: '192.0.2.9', port: 33333 }, ack.msg));
    assert.equal(punch.confirmed[0]?.path, 'birthday');
    assert.equal(punch.confirmed[0]?.port, 33333);
    const before = punch.birthdayProbes;
    punch.handleTimeout(1000);
    assert.equal(punch.birthdayProbes, before, 'no probes once confirmed');
  });

  it('the hard side opens 256 sockets, punches from each, keeps the one that hits and closes the rest when its linger ends', () => {
    const t = traversal();
    const work = toPeers(t, 40000, 12345, 'eim');
    assert.equal(t.strategies.get('h'), 'birthday-hard');
    const binds = work.filter((w) => w.type === 'bind');
    assert.equal(binds.length, BIRTHDAY_SOCKETS);
    const fromSockets = new Set(
      sends(work)
        .filter((s) => s.msg.type === 'punch' && s.socket !== 0)
        .map((s) => s.socket),
    );
    assert.equal(fromSockets.size, BIRTHDAY_SOCKETS, 'one punch from every birthday socket');
    assert.ok(!sends(work).some((s) => s.msg.type === 'relay_allocate'), 'no relay yet');
    // The rounds end after BIRTHDAY_HARD_ROUNDS.
    let birthdayPunches = 0;
    for (let now = PEERS_AT + 5; now < PEERS_AT + 1980; now += 25) {
      t.handleTimeout(now);
      birthdayPunches += sends(drain(t)).filter((s) => s.socket !== 0).length;
    }
    assert.equal(birthdayPunches, BIRTHDAY_SOCKETS * (BIRTHDAY_HARD_ROUNDS - 1));
    // The easy side's probe hits socket 17: acked from socket 17.
    const peer = { address: '192.0.2.9', port: 5555 };
    const probe = encodePunch(KEY, {
      type: 'punch',
      requestId: 5,
      from: 'h',
      to: 'j',
      candidate: BIRTHDAY_CANDIDATE,
      sentAt: 0,
    });
    t.handle(2000, peer, probe, 17);
    const answer = sends(drain(t));
    const ack = answer.find((s) => s.msg.type === 'punch_ack');
    assert.equal(ack?.socket, 17, 'the ack leaves from the socket the probe hit');
    assert.ok(
      answer.some((s) => s.msg.type === 'punch' && s.socket === 17),
      'and punches back',
    );
    const punchBack = answer.find((s) => s.msg.type === 'punch' && s.socket === 17)?.msg;
    assert.ok(punchBack?.type === 'punch');
    if (punchBack?.type !== 'punch') return;
    const back = encodePunch(KEY, {
      type: 'punch_ack',
      requestId: 6,
      from: 'h',
      to: 'j',
      candidate: punchBack.candidate,
      sentAt: punchBack.sentAt,
    });
    t.handle(2010, peer, back, 17);
    const done = drain(t);
    const punched = done.find((w) => w.type === 'event' && w.event.type === 'punched');
    assert.ok(punched?.type === 'event' && punched.event.type === 'punched');
    if (punched?.type !== 'event' || punched.event.type !== 'punched') return;
    assert.equal(punched.event.peers[0]?.path, 'birthday');
    assert.equal(t.gameSocket, 17);
    const unbindsIn = (work: W[]) =>
      work.filter((w) => w.type === 'unbind').map((w) => (w.type === 'unbind' ? w.socket : -1));
    assert.deepEqual(unbindsIn(done), [], 'the sockets stay open while the peer may punch them');
    // The peer punches back the first mappings it heard from, here socket 40's: it is kept.
    const punchBack40 = encodePunch(KEY, {
      type: 'punch',
      requestId: 7,
      from: 'h',
      to: 'j',
      candidate: 3,
      sentAt: 2990,
    });
    t.handle(3000, peer, punchBack40, 40);
    const late = sends(drain(t));
    assert.ok(
      late.some((s) => s.msg.type === 'punch_ack' && s.socket === 40),
      'acked there',
    );
    t.handle(3010, peer, new Uint8Array([6]), 40);
    assert.ok(
      drain(t).some((w) => w.type === 'event' && w.event.type === 'data'),
      'its datagrams are game data',
    );
    const closeAt = t.nextDeadline();
    assert.equal(closeAt, 2010 + PUNCH_LINGER_MS, 'the rest close when the linger ends');
    t.handleTimeout(closeAt - 1);
    assert.deepEqual(unbindsIn(drain(t)), []);
    t.handleTimeout(closeAt);
    const unbinds = unbindsIn(drain(t));
    assert.equal(unbinds.length, BIRTHDAY_SOCKETS - 2, 'every other birthday socket closed');
    assert.ok(!unbinds.includes(17) && !unbinds.includes(40));
    t.handle(closeAt + 10, peer, new Uint8Array([7]), 41);
    assert.ok(
      !drain(t).some((w) => w.type === 'event' && w.event.type === 'data'),
      "a closed socket is nobody's",
    );
    // The game's datagrams leave from socket 17, and its datagrams there are game data.
    t.sendGame(peer, new Uint8Array([1, 2, 3]));
    const game = drain(t).find((w) => w.type === 'send');
    assert.equal(game?.type === 'send' ? game.socket : undefined, 17);
    t.handle(2100, peer, new Uint8Array([4, 5]), 17);
    const data = drain(t).find((w) => w.type === 'event' && w.event.type === 'data');
    assert.ok(data, 'game data from the birthday socket');
    assert.ok(BIRTHDAY_RELAY_DELAY_MS > 1000);
  });

  it('classifies ports up to the sweep range apart as edm-sequential (a busy or wrapping pool)', () => {
    assert.equal(SEQUENTIAL_PORT_DELTA, SWEEP_PORT_RANGE);
    assert.equal(natClassOf(40063, 40000), 'edm-sequential', "the lab's 64-port pool wrapped");
    assert.equal(natClassOf(40000, 40000 + SWEEP_PORT_RANGE + 1), 'edm-random');
  });

  it('the easy side sweeps ±SWEEP_PORT_RANGE of a sequential peer at once, every few rounds, and delays the relay', () => {
    const t = traversal();
    let work = toPeers(t, 40000, 40000, 'edm-sequential');
    assert.equal(t.strategies.get('h'), 'sequential-easy');
    const swept = (w: W[]) =>
      sends(w).filter(
        (s) => s.msg.type === 'punch' && s.to.address === '192.0.2.9' && s.to.port !== 5555,
      );
    const first = swept(work);
    const ports = new Set(first.map((s) => s.to.port));
    assert.equal(ports.size, 2 * SWEEP_PORT_RANGE, 'every port of the window in the first round');
    assert.ok(ports.has(5555 + SWEEP_PORT_RANGE) && ports.has(5555 - SWEEP_PORT_RANGE));
    assert.ok(!ports.has(5555 + SWEEP_PORT_RANGE + 1));
    let total = first.length;
    let sweeps = 1;
    let relayAt: number | undefined;
    let lastSweepAt = PEERS_AT;
    let minGap = Number.POSITIVE_INFINITY;
    for (let now = PEERS_AT + 5; now <= PEERS_AT + 8_000; now += 5) {
      t.handleTimeout(now);
      work = drain(t);
      const s = swept(work);
      if (s.length > 0) {
        assert.equal(s.length, 2 * SWEEP_PORT_RANGE, 'whole sweeps only');
        sweeps++;
        minGap = Math.min(minGap, now - lastSweepAt);
        lastSweepAt = now;
      }
      total += s.length;
      if (relayAt === undefined && sends(work).some((x) => x.msg.type === 'relay_allocate')) {
        relayAt = now;
      }
    }
    assert.ok(minGap >= 50 * SWEEP_EVERY_ROUNDS, `sweeps ${minGap} ms apart at least`);
    assert.ok(total <= 2_000, `${total} sweep datagrams in the 8 s budget (${sweeps} sweeps)`);
    assert.ok(
      relayAt !== undefined && relayAt >= PEERS_AT + SEQUENTIAL_RELAY_DELAY_MS,
      `relay at ${relayAt}`,
    );
  });

  it('the sequential side predicts nothing towards an eim peer (its port is kept)', () => {
    const t = traversal();
    toPeers(t, 40000, 40001, 'eim');
    assert.equal(t.nat, 'edm-sequential');
    assert.equal(t.strategies.get('h'), 'sequential-hard');
    const others = new Set<number>();
    for (let now = PEERS_AT + 5; now <= PEERS_AT + 1_980; now += 5) {
      t.handleTimeout(now);
      for (const s of sends(drain(t))) {
        if (s.msg.type === 'punch' && s.to.address === '192.0.2.9') others.add(s.to.port);
        assert.notEqual(s.msg.type, 'relay_allocate', 'no relay before the sequential delay');
      }
    }
    assert.deepEqual([...others], [5555], 'only the public port');
  });

  it('a punch from a swept port makes it a candidate punched every round', () => {
    const sent: { to: Endpoint; candidate: number }[] = [];
    const punch = new PunchAttempt({
      selfName: 'j',
      punchKey: KEY,
      peers: [
        {
          name: 'h',
          nickname: '',
          isHost: true,
          publicEndpoint: { address: '192.0.2.9', port: 40000 },
          candidates: [],
          nat: 'edm-sequential',
        },
      ],
      now: 0,
      send: (to, data) => {
        const d = decodeV2(data);
        if (d.ok && d.msg.type === 'punch') sent.push({ to, candidate: d.msg.candidate });
      },
    });
    assert.ok(punch.setPrediction(0, 'h', 'sweep'));
    const from = { address: '192.0.2.9', port: 40007 };
    const msg = decodeV2(
      encodePunch(KEY, {
        type: 'punch',
        requestId: 1,
        from: 'h',
        to: 'j',
        candidate: 0,
        sentAt: 0,
      }),
    );
    assert.ok(msg.ok && msg.msg.type === 'punch');
    if (!msg.ok || msg.msg.type !== 'punch') return;
    punch.handle(10, from, msg.msg);
    sent.length = 0;
    for (let now = 50; now <= 150; now += 50) punch.handleTimeout(now);
    const hits = sent.filter((s) => s.to.port === 40007).length;
    assert.equal(hits, 3, 'every round, not only on sweep rounds');
    assert.equal(sent.filter((s) => s.to.port === 40030).length, 0, 'other sweep ports wait');
  });
});
