import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ATTACK_KINDS, type AttackKind, legitBoth, legitLoad } from '../src/bench/attack.js';
import {
  firewallUnavailableReasons,
  runAttackPhaseBehindFirewall,
} from '../src/bench/attack-netns.js';
import { type LegitSummary, legitSummary } from '../src/bench/attack-phase.js';
import { type BenchChild, freeUdpPort, startChild } from '../src/bench/child.js';
import { floodInChild, startFlood } from '../src/bench/flood-process.js';
import { SERVER_CLI_PATH } from '../src/cli/index.js';
import { drain } from '../src/core/index.js';
import { decodeV2, encodeV2, padRegisterRequest } from '../src/protocol/v2.js';
import { RendezvousServer } from '../src/server/rendezvous.js';
import { RECEIVE_BUFFER_BYTES } from '../src/server/shell.js';
import { DEFAULT_SOURCE_LIMITS, UNLIMITED_SOURCES } from '../src/server/source-limits.js';
import { labSuitesRanElsewhere, unitTier } from './suites.js';

/**
 * Issue 15: abuse from one source. Fake-clock checks of every quota and of the memory budget,
 * then the real server (the CLI, `--max-old-space-size=96`) flooded from one loopback socket
 * while legit lobbies from other addresses keep completing (docs/security.md).
 */

type Sent = { to: { address: string; port: number }; data: Uint8Array };

function core(options: Partial<ConstructorParameters<typeof RendezvousServer>[0]> = {}) {
  const sent: Sent[] = [];
  let n = 0;
  const server = new RendezvousServer({
    randomBytes: (bytes) => new Uint8Array(bytes).fill(++n & 255),
    ...options,
  });
  // As the driver does after every datagram: what the core queued goes out.
  const handle = server.handle.bind(server);
  server.handle = (now, from, data, socket) => {
    handle(now, from, data, socket);
    for (const w of drain(server)) if (w.type === 'send') sent.push({ to: w.to, data: w.data });
  };
  return { server, sent };
}

const host = (session: string, name = 'h', maxPlayers = 2) =>
  padRegisterRequest(
    encodeV2({
      type: 'host',
      requestId: 1,
      session,
      maxPlayers,
      name,
      nickname: 'H',
      candidates: [],
    }),
  );
const join = (session: string, name: string) =>
  padRegisterRequest(
    encodeV2({ type: 'join', requestId: 1, session, name, nickname: 'J', candidates: [] }),
  );
const lastReply = (sent: Sent[]) => {
  const d = decodeV2(sent[sent.length - 1]?.data as Uint8Array);
  assert.ok(d.ok);
  return d.msg;
};

describe('per-source quotas (fake clock)', () => {
  it('one source: at most requestBurst datagrams at once, the rest dropped before decoding', () => {
    const { server } = core();
    for (let i = 0; i < 1000; i++)
      server.handle(0, { address: '192.0.2.1', port: 5 }, host(`s${i}`));
    assert.equal(server.counters.rejections.source_rate, 1000 - DEFAULT_SOURCE_LIMITS.requestBurst);
    // Another source is served at once.
    server.handle(0, { address: '192.0.2.2', port: 5 }, host('other'));
    assert.equal(server.v2.sessionCount, DEFAULT_SOURCE_LIMITS.v2Sessions + 1);
  });

  it('v2: one source (an IPv6 /64) hosts at most v2Sessions lobbies; server_full, then others go on', () => {
    const { server, sent } = core();
    for (let i = 0; i < 40; i++) {
      server.handle(i * 100, { address: `2001:db8:1:2::${i + 1}`, port: 5 }, host(`s${i}`));
    }
    assert.equal(server.v2.sessionCount, DEFAULT_SOURCE_LIMITS.v2Sessions);
    const refusal = lastReply(sent);
    assert.equal(refusal.type === 'error' && refusal.code, 'server_full');
    server.handle(5000, { address: '2001:db8:1:3::1', port: 5 }, host('other'));
    assert.equal(server.v2.sessionCount, DEFAULT_SOURCE_LIMITS.v2Sessions + 1);
  });

  it('legacy: a forged source spends only a refilling bucket, so its victim hosts again within seconds', () => {
    const { server, sent } = core();
    const victim = { address: '198.51.100.7', port: 4000 };
    for (let i = 0; i < 100; i++) server.handle(i, victim, new TextEncoder().encode(`rs:f${i}:2`));
    assert.equal(server.legacy.sessionCount, DEFAULT_SOURCE_LIMITS.legacySessionBurst);
    assert.ok((server.counters.rejections.source_quota ?? 0) > 0);
    sent.length = 0;
    const refill = 1000 / DEFAULT_SOURCE_LIMITS.legacySessionsPerS;
    server.handle(100 + refill, victim, new TextEncoder().encode('rs:mine:2'));
    assert.equal(server.legacy.sessionCount, DEFAULT_SOURCE_LIMITS.legacySessionBurst + 1);
  });
});

describe('memory budget (fake clock)', () => {
  it('never grows past the budget: server_full for v2, close:Server full for legacy; freed again', () => {
    const budget = 200_000;
    const { server, sent } = core({ sourceLimits: UNLIMITED_SOURCES, memoryBudgetBytes: budget });
    for (let i = 0; i < 2000; i++) {
      server.handle(
        0,
        { address: `10.0.${i >> 8}.${i & 255}`, port: 5 },
        host(`s${i}`, 'x'.repeat(32), 32),
      );
      assert.ok(server.limits.budget.used <= budget);
    }
    assert.ok(server.v2.sessionCount < 2000);
    const refusal = lastReply(sent);
    assert.equal(refusal.type === 'error' && refusal.code, 'server_full');
    // Legacy sessions take what v2 left (less than one v2 lobby), then are refused too.
    const v2Used = server.limits.budget.used;
    let reply = '';
    for (let i = 0; i < 20 && reply !== "close:'Server full'"; i++) {
      server.handle(0, { address: `10.9.9.${i}`, port: 5 }, new TextEncoder().encode(`rs:k${i}:2`));
      reply = new TextDecoder().decode(sent[sent.length - 1]?.data);
      assert.ok(server.limits.budget.used <= budget);
    }
    assert.equal(reply, "close:'Server full'");
    const legacyUsed = server.limits.budget.used - v2Used;
    // Unvalidated lobbies go after 10 s, and with them their bytes.
    server.handleTimeout(20_000);
    assert.equal(server.v2.sessionCount, 0);
    assert.equal(server.limits.budget.used, legacyUsed);
  });
});

describe('unvalidated members hold no slot', () => {
  it('two forged joiners re-sending join every 50 ms do not keep a 2-player lobby from starting', () => {
    const { server, sent } = core();
    const h = { address: '192.0.2.10', port: 5 };
    const j = { address: '192.0.2.11', port: 5 };
    server.handle(0, h, host('lobby'));
    const hostToken = (lastReply(sent) as { token: Uint8Array }).token;
    server.handle(
      1,
      h,
      encodeV2({
        type: 'keepalive',
        requestId: 2,
        session: 'lobby',
        token: hostToken,
        lobbyVersion: 0,
      }),
    );
    for (let t = 2; t < 500; t += 50) {
      server.handle(t, { address: '203.0.113.1', port: 9 }, join('lobby', 'f1'));
      server.handle(t, { address: '203.0.113.2', port: 9 }, join('lobby', 'f2'));
    }
    server.handle(600, j, join('lobby', 'j'));
    const reply = lastReply(sent);
    assert.equal(reply.type, 'registered');
    const token = (reply as { token: Uint8Array }).token;
    sent.length = 0;
    server.handle(
      601,
      j,
      encodeV2({ type: 'keepalive', requestId: 2, session: 'lobby', token, lobbyVersion: 0 }),
    );
    const peersTo = sent.filter(
      (s) =>
        decodeV2(s.data).ok && (decodeV2(s.data) as { msg: { type: string } }).msg.type === 'peers',
    );
    assert.deepEqual(peersTo.map((s) => s.to.address).sort(), [h.address, j.address]);
  });
});

describe('replies to unvalidated sources stay within 3x', () => {
  it('registered to a long IPv6 source: refused small when unpadded, answered when padded', () => {
    const { server, sent } = core();
    const from = { address: '2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff', port: 5 };
    const tiny = encodeV2({
      type: 'join',
      requestId: 1,
      session: 's',
      name: 'n',
      nickname: '',
      candidates: [],
    });
    server.handle(0, { address: '192.0.2.1', port: 5 }, host('s'));
    sent.length = 0;
    server.handle(1, from, tiny);
    assert.ok((sent[0]?.data.length ?? 0) <= 3 * tiny.length);
    assert.equal(lastReply(sent).type, 'error');
    const padded = padRegisterRequest(tiny);
    sent.length = 0;
    server.handle(2, from, padded);
    assert.equal(lastReply(sent).type, 'registered');
    assert.ok((sent[0]?.data.length ?? 0) <= 3 * padded.length);
  });

  it('unsupported_version: a bare header gets nothing, a longer request a reply within 3x', () => {
    const { server, sent } = core();
    const bare = Uint8Array.from([0x89, 0x48, 0x50, 0x03, 1, 0, 0, 0, 1]);
    server.handle(0, { address: '192.0.2.1', port: 5 }, bare);
    assert.equal(sent.length, 0);
    const longer = Uint8Array.from([...bare, 0, 0, 0]);
    server.handle(0, { address: '192.0.2.1', port: 5 }, longer);
    assert.equal(sent.length, 1);
    assert.ok((sent[0]?.data.length ?? 0) <= 3 * longer.length);
  });

  it('candidates that are not unicast IP literals are refused', () => {
    const { server, sent } = core();
    for (const address of [
      '255.255.255.255',
      '0.0.0.0',
      '224.0.0.1',
      'dead.cafe',
      '::',
      'ff02::1',
    ]) {
      sent.length = 0;
      const msg = encodeV2({
        type: 'host',
        requestId: 1,
        session: 's',
        maxPlayers: 2,
        name: 'h',
        nickname: 'H',
        candidates: [{ address, port: 9 }],
      });
      server.handle(0, { address: '192.0.2.1', port: 5 }, padRegisterRequest(msg));
      const reply = lastReply(sent);
      assert.equal(reply.type === 'error' && reply.code, 'bad_request', address);
    }
    assert.equal(server.v2.sessionCount, 0);
  });
});

/**
 * The server's receive buffer (4 MiB asked) is capped at `net.core.rmem_max`; the kernel
 * default (208 KiB) holds only a few milliseconds of a fast flood. `.ci/run` raises it as
 * docs/operations.md tells operators to.
 */
function rmemMax(): number {
  try {
    return Number(readFileSync('/proc/sys/net/core/rmem_max', 'latin1'));
  } catch {
    return 0;
  }
}
const FULL_BUFFER = rmemMax() >= RECEIVE_BUFFER_BYTES;
/**
 * Each request type's flood, capped at a rate that holds on the 2-core CI machine beside the
 * flood generator with a margin (one source reaches 155,000-320,000/s here, past what one
 * Node process reads: the test behind deploy/holepunch.nft below floods at that rate;
 * docs/security.md). With the kernel's default buffer, 40,000/s.
 */
const FLOOD_RATE = FULL_BUFFER ? 50_000 : 40_000;
/**
 * Not held to the p99 bound, only to "no legit failure": the worst memory flood's first burst
 * fills and starts two 32-player lobbies at once, and legit p99 under it came to 0.2-0.8 of
 * the bound (0.4-1.0 behind the nftables ruleset) in this round's runs: too close to assert
 * (docs/security.md, "Measured under attack").
 */
const P99_NOT_MET: readonly AttackKind[] = ['v2_memory'];
const FLOOD_MS = 2000;

/** 10x the unflooded p99, with a floor of 5 ms: loopback p99 is noise below that. */
const boundOf = (baseP99Ms: number): number => 10 * Math.max(5, baseP99Ms);

/**
 * Legit lobbies of both protocols ([v2, legacy]) under one flood: none failed, some completed,
 * p99 within `bounds` (but for `P99_NOT_MET`); the margins printed as diagnostics.
 */
function holdToBounds(
  t: { diagnostic(message: string): void },
  kind: AttackKind,
  ratePerS: number,
  legit: readonly LegitSummary[],
  bounds: readonly number[],
): void {
  const flood = `${kind} at ${Math.round(ratePerS)}/s`;
  const margins = legit.map((r, i) => (r.p99Ms / (bounds[i] ?? 1)).toFixed(2));
  t.diagnostic(`${flood}: p99 / bound v2 ${margins[0]}, legacy ${margins[1]}`);
  for (const [i, r] of legit.entries()) {
    const what = `${flood}: ${JSON.stringify(r)} bound ${bounds[i]}`;
    assert.equal(r.failed, 0, what);
    assert.ok(r.completed > 0, what);
    if (!P99_NOT_MET.includes(kind)) assert.ok(r.p99Ms <= (bounds[i] ?? 0), what);
  }
}

async function spawnServer(extra: readonly string[]): Promise<BenchChild> {
  const port = await freeUdpPort();
  return startChild(
    'attacked server',
    [
      '--max-old-space-size=96',
      SERVER_CLI_PATH,
      String(port),
      'y',
      '--host',
      '127.0.0.1',
      '--log-level',
      'silent',
      ...extra,
    ],
    { ipc: false, port },
  );
}

/** Flooding the real server from one loopback socket; bounded: a few seconds per attack. */
describe('the server under a one-source flood (CLI, --max-old-space-size=96)', {
  skip: unitTier(),
  timeout: 120_000,
}, () => {
  it('the worst memory attack for 8 s, with and without per-source limits: alive, and serving with them', async () => {
    for (const extra of [[], ['--no-source-limits']]) {
      const server = await spawnServer(extra);
      try {
        await floodInChild('v2_memory', server.port, 8000);
        assert.ok(server.alive(), `died with ${extra.join(' ')}`);
        if (extra.length === 0) {
          const v2 = await legitLoad('v2', server.port, performance.now() + 500, {
            firstId: 1,
            maxLobbies: 20,
          });
          const legacy = await legitLoad('legacy', server.port, performance.now() + 500, {
            firstId: 1,
            maxLobbies: 20,
          });
          assert.ok(v2.completed > 0 && v2.failed === 0, JSON.stringify(v2));
          assert.ok(legacy.completed > 0 && legacy.failed === 0, JSON.stringify(legacy));
        }
      } finally {
        await server.stop();
      }
    }
  });

  it(`legit lobbies of both protocols keep completing under a flood of each request type (up to ${FLOOD_RATE}/s), p99 within 10x (the worst memory flood: no failure)`, async (t) => {
    if (process.env.CI === 'true') {
      assert.ok(FULL_BUFFER, `net.core.rmem_max is ${rmemMax()}: .ci/run raises it to 4 MiB`);
    }
    if (!FULL_BUFFER)
      t.diagnostic(`net.core.rmem_max ${rmemMax()} < 4 MiB: floods at ${FLOOD_RATE}/s`);
    const server = await spawnServer([]);
    try {
      const base = await legitBoth(server.port, performance.now() + FLOOD_MS);
      const bounds = base.map((r) => boundOf(legitSummary(r).p99Ms));
      for (const kind of ATTACK_KINDS) {
        const names: string[] = [];
        const running = await startFlood(kind, server.port, FLOOD_MS, {
          sessionsToLock: () => names.slice(-4),
          ratePerS: FLOOD_RATE,
        });
        const legit = await legitBoth(server.port, performance.now() + FLOOD_MS, (n) =>
          names.push(n),
        );
        const attack = await running.result;
        const rate = (attack.sent * 1000) / attack.durationMs;
        holdToBounds(t, kind, rate, legit.map(legitSummary), bounds);
      }
      assert.ok(server.alive());
    } finally {
      await server.stop();
    }
  });
});

const firewallReasons = await firewallUnavailableReasons();
const firewallSkip =
  labSuitesRanElsewhere() ||
  (firewallReasons.length > 0 && process.env.CI !== 'true'
    ? `needs root and nftables: ${firewallReasons.join('; ')}`
    : false);

/**
 * One Node process receives at most ~150,000-200,000 datagrams a second on one core here, and
 * one flooding source sends faster than that: no check inside the server can then tell a legit
 * datagram from the flood before the kernel drops it. Deployed as docs/operations.md says,
 * behind deploy/holepunch.nft, the kernel drops one source's excess first.
 */
describe('behind deploy/holepunch.nft (root, a namespace of its own)', {
  skip: firewallSkip,
  timeout: 180_000,
}, () => {
  it('every flood at the full rate one source reaches: no legit lobby fails, p99 within 10x (the worst memory flood: no failure)', async (t) => {
    const f = await runAttackPhaseBehindFirewall({
      kinds: ATTACK_KINDS,
      floodMs: FLOOD_MS,
      baseMs: FLOOD_MS,
      memoryAttackMs: 0,
      memoryAttackNoLimitsMs: 0,
    });
    const bounds = [boundOf(f.baseV2.p99Ms), boundOf(f.baseLegacy.p99Ms)];
    for (const flood of f.floods) {
      holdToBounds(t, flood.kind, flood.sentPerS, [flood.v2, flood.legacy], bounds);
    }
    // Unthrottled, the cheapest flood outruns the server's reading (that is the point).
    const garbage = f.floods.find((x) => x.kind === 'legacy_garbage');
    assert.ok((garbage?.sentPerS ?? 0) > FLOOD_RATE, `full rate: ${garbage?.sentPerS}/s`);
  });
});
