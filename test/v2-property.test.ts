import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { decodeV2, encodeV2, type V2Encodable, type V2Message } from '../src/protocol/v2.js';
import { createCounters, type ServerCounters } from '../src/server/counters.js';
import type { SessionLifecycleEvent } from '../src/server/lifecycle.js';
import { V2_SESSION_ENDINGS } from '../src/server/v2-lifecycle.js';
import {
  MEMBER_SILENCE_MS,
  PEERS_ACK_WITHIN_MS,
  STARTED_LINGER_MS,
  V2Sessions,
  VALIDATE_WITHIN_MS,
} from '../src/server/v2-sessions.js';
import { seededBytes, seededRandom } from '../src/sim/random.js';

const TTL_MS = 40_000;
const ENDPOINTS: readonly Endpoint[] = [
  { address: '198.51.100.1', port: 4000 },
  { address: '198.51.100.1', port: 4001 },
  { address: '203.0.113.2', port: 51000 },
  { address: '203.0.113.3', port: 52000 },
  { address: '203.0.113.4', port: 4000 },
];
const SESSIONS = ['s1', 's2'];
/** Time jumps: past the peers retries, the ack report, validation, silence, linger and TTL. */
const WAITS = [
  1,
  200,
  1_000,
  5_000,
  PEERS_ACK_WITHIN_MS,
  VALIDATE_WITHIN_MS,
  MEMBER_SILENCE_MS,
  STARTED_LINGER_MS,
  TTL_MS,
];

type Action =
  | { readonly kind: 'host'; readonly who: number; readonly session: string; readonly max: number }
  | { readonly kind: 'join'; readonly who: number; readonly session: string }
  | {
      /**
       * Sent by the `pick`-th (modulo) registration the test holds a token of, or with
       * `byHost` of a host registration (else `start` and `close` would mostly be refused).
       */
      readonly kind: 'keepalive' | 'start' | 'leave' | 'close' | 'peers_ack';
      readonly pick: number;
      readonly byHost: boolean;
    }
  | { readonly kind: 'wait'; readonly ms: number; readonly jump: boolean };

type Finale = 'none' | 'shutdown' | 'drain' | 'drain_then_shutdown';

const whoArb = fc.integer({ min: 0, max: ENDPOINTS.length - 1 });
const sessionArb = fc.constantFrom(...SESSIONS);
const requestArb = (kind: 'keepalive' | 'start' | 'leave' | 'close' | 'peers_ack') =>
  fc.record({ kind: fc.constant(kind), pick: fc.nat({ max: 7 }), byHost: fc.boolean() });

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('host' as const),
      who: whoArb,
      session: sessionArb,
      max: fc.integer({ min: 2, max: 3 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('join' as const), who: whoArb, session: sessionArb }),
  },
  { weight: 8, arbitrary: requestArb('keepalive') },
  { weight: 2, arbitrary: requestArb('start') },
  { weight: 1, arbitrary: requestArb('leave') },
  { weight: 2, arbitrary: requestArb('close') },
  { weight: 2, arbitrary: requestArb('peers_ack') },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('wait' as const),
      ms: fc.constantFrom(...WAITS),
      jump: fc.boolean(),
    }),
  },
);

const finaleArb = fc.constantFrom<Finale>('none', 'shutdown', 'drain', 'drain_then_shutdown');

/** What the runs saw, over all of them: proof that every ending was reached. */
const seen = new Map<string, number>();
const see = (what: string) => seen.set(what, (seen.get(what) ?? 0) + 1);

/** The ending a lifecycle event stands for, from its type and reason. */
function endingOf(event: SessionLifecycleEvent): string {
  if (event.type === 'started') return event.reason ?? '?';
  if (event.type === 'expired') return 'expired';
  const reason = event.reason ?? '';
  if (reason === 'bye') return 'host_closed';
  if (reason === 'The host left.') return 'host_left';
  if (reason.startsWith('The host left: nothing')) return 'host_silent';
  if (reason === 'The host did not confirm its address.') return 'host_unvalidated';
  if (reason === 'draining') return 'drained';
  if (reason === 'stopping') return 'shutdown';
  return `closed: ${reason}`;
}

/**
 * Drives one random sequence at a fresh table and checks, after every step, the counters
 * against the sessions the test saw end: each ending once, created = ended + waiting.
 */
function run(seed: number, autostart: boolean, actions: readonly Action[], finale: Finale): void {
  const counters: ServerCounters = createCounters();
  const events: SessionLifecycleEvent[] = [];
  const out: { to: Endpoint; msg: V2Message }[] = [];
  const server = new V2Sessions({
    outbox: {
      send(to, data) {
        const decoded = decodeV2(data);
        assert.ok(decoded.ok, 'the server only sends decodable datagrams');
        if (decoded.ok) out.push({ to, msg: decoded.msg });
      },
    },
    counters,
    randomBytes: seededBytes(seededRandom(seed)),
    sessionTtlMs: TTL_MS,
    maxSessions: 10,
    maxPlayersCap: 8,
    autostart,
    onLifecycle: (event) => events.push(event),
  });

  // The model: names of lobbies waiting (created, not yet ended), and what ended.
  const waiting = new Set<string>();
  const ended = { started: 0, closed: 0, expired: 0 };
  let created = 0;
  /** Names that started at some point (a later `closed` push to them is not an ending). */
  const startedNames = new Set<string>();
  const tokens = new Map<string, Uint8Array>();
  /** The registrations in `tokens` that are hosts'. */
  const hosts = new Set<string>();
  const NO_TOKEN = new Uint8Array(16);
  let now = 0;
  let requestId = 0;

  const check = (step: string, action: Action | Finale): void => {
    let endings = 0;
    for (const event of events) {
      assert.equal(event.protocol, 'v2');
      if (event.type === 'created') {
        assert.ok(!waiting.has(event.key), `${step}: ${event.key} created while waiting`);
        waiting.add(event.key);
        created++;
        continue;
      }
      assert.ok(waiting.has(event.key), `${step}: ${event.key} ${event.type} but not waiting`);
      waiting.delete(event.key);
      ended[event.type]++;
      endings++;
      if (event.type === 'started') startedNames.add(event.key);
      see(endingOf(event));
    }
    events.length = 0;
    assert.equal(counters.sessionsCreated, created, `${step}: sessionsCreated`);
    assert.equal(counters.sessionsStarted, ended.started, `${step}: sessionsStarted`);
    assert.equal(counters.sessionsClosed, ended.closed, `${step}: sessionsClosed`);
    assert.equal(counters.sessionsExpired, ended.expired, `${step}: sessionsExpired`);
    assert.equal(server.waitingCount, waiting.size, `${step}: waiting lobbies`);
    assert.equal(
      counters.sessionsCreated,
      counters.sessionsStarted + counters.sessionsClosed + counters.sessionsExpired + waiting.size,
      `${step}: created = ended + waiting`,
    );
    assert.equal(counters.rejections.internal_error, undefined);
    // A `closed` push is an ending's, or a started session's that leaves with a word to its
    // members (the host's `close` in the linger, shutdown): those count nothing more.
    const closedPushes = out.filter((o) => o.msg.type === 'closed').length;
    if (closedPushes > 0 && endings === 0) {
      const kind = typeof action === 'string' ? action : action.kind;
      assert.ok(kind === 'close' || kind.includes('shutdown'), `${step}: closed push, no ending`);
      assert.ok(startedNames.size > 0, `${step}: closed push for a session never started`);
      see(`closed push after start (${kind})`);
    }
    out.length = 0;
  };

  const request = (who: number, session: string, msg: V2Encodable): void => {
    const from = ENDPOINTS[who] as Endpoint;
    server.handle(now, from, encodeV2(msg));
    const reply = out.find((o) => o.msg.requestId === msg.requestId && o.to === from)?.msg;
    if (reply?.type !== 'registered') return;
    tokens.set(`${who} ${session}`, reply.token);
    if (msg.type === 'host') hosts.add(`${who} ${session}`);
    else hosts.delete(`${who} ${session}`);
  };

  actions.forEach((action, i) => {
    const step = `step ${i} ${JSON.stringify(action)}`;
    if (action.kind === 'wait') {
      const target = now + action.ms;
      if (!action.jump) {
        // A timer that fires on time, as the shell's does.
        for (let guard = 0; server.nextDeadline() <= target; guard++) {
          assert.ok(guard < 10_000, `${step}: timeouts do not move on`);
          now = Math.max(now, server.nextDeadline());
          server.handleTimeout(now);
        }
      }
      // A timer that fires late (a stalled event loop): everything due at once.
      now = target;
      server.handleTimeout(now);
      check(step, action);
      return;
    }
    now += 1;
    const id = ++requestId;
    if (action.kind !== 'host' && action.kind !== 'join') {
      // Tokens of sessions that ended stay in the list: late and stale requests too.
      const held = [...tokens].filter(([k]) => !action.byHost || hosts.has(k));
      const [key, token] = held[action.pick % Math.max(1, held.length)] ?? ['0 s1', NO_TOKEN];
      const [whoText, session = 's1'] = key.split(' ');
      const who = Number(whoText);
      switch (action.kind) {
        case 'keepalive':
          request(who, session, {
            type: 'keepalive',
            requestId: id,
            session,
            token,
            lobbyVersion: 0,
          });
          break;
        case 'close':
          request(who, session, { type: 'close', requestId: id, session, token, reason: 'bye' });
          break;
        default:
          request(who, session, { type: action.kind, requestId: id, session, token });
      }
      check(step, action);
      return;
    }
    const { who, session } = action;
    const name = `p${who}`;
    switch (action.kind) {
      case 'host':
        request(who, session, {
          type: 'host',
          requestId: id,
          session,
          maxPlayers: action.max,
          name,
          nickname: name.toUpperCase(),
          candidates: [],
        });
        break;
      case 'join':
        request(who, session, {
          type: 'join',
          requestId: id,
          session,
          name,
          nickname: name.toUpperCase(),
          candidates: [],
        });
        break;
    }
    check(step, action);
  });

  if (finale === 'drain' || finale === 'drain_then_shutdown') {
    server.drain(now, 'draining');
    assert.equal(server.waitingCount, 0, 'drain closes every waiting lobby');
    check('drain', finale);
  }
  if (finale === 'shutdown' || finale === 'drain_then_shutdown') {
    server.shutdown(now, 'stopping');
    check('shutdown', finale);
    assert.equal(server.sessionCount, 0, 'shutdown leaves no session');
    assert.equal(waiting.size, 0);
    assert.equal(
      counters.sessionsCreated,
      counters.sessionsStarted + counters.sessionsClosed + counters.sessionsExpired,
      'after shutdown every session created ended exactly once',
    );
  }
}

describe('v2 session lifecycle under random interaction sequences (fast-check)', () => {
  test('every session ends exactly once, and the counters equal the endings the test saw', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.boolean(),
        fc.array(actionArb, { minLength: 1, maxLength: 80 }),
        finaleArb,
        run,
      ),
      { numRuns: 1_000, seed: 1_111 },
    );
    // Not vacuous: the sequences reached every counted ending, and a started session's
    // later `closed` (host close in the linger, shutdown) that must not count again.
    for (const [ending, row] of Object.entries(V2_SESSION_ENDINGS)) {
      if (row.counter === null) continue;
      assert.ok((seen.get(ending) ?? 0) > 0, `ending ${ending} never reached: ${[...seen]}`);
    }
    assert.ok((seen.get('closed push after start (close)') ?? 0) > 0, `${[...seen]}`);
    const shutdowns = [...seen.keys()].filter((k) => k.startsWith('closed push after start (dr'));
    assert.ok(
      (seen.get('closed push after start (shutdown)') ?? 0) > 0 && shutdowns.length > 0,
      `${[...seen]}`,
    );
    for (const what of seen.keys()) assert.ok(!what.startsWith('closed: '), `unknown ${what}`);
  });
});

describe('v2 session endings (examples from issue #11)', () => {
  const HOST: Endpoint = { address: '198.51.100.1', port: 1111 };
  const JOINER: Endpoint = { address: '198.51.100.2', port: 2222 };

  function startedGame() {
    const counters = createCounters();
    const events: string[] = [];
    const out: V2Message[] = [];
    const server = new V2Sessions({
      outbox: {
        send(_to, data) {
          const d = decodeV2(data);
          if (d.ok) out.push(d.msg);
        },
      },
      counters,
      randomBytes: seededBytes(seededRandom(7)),
      sessionTtlMs: TTL_MS,
      maxSessions: 10,
      maxPlayersCap: 8,
      autostart: true,
      onLifecycle: (e) => events.push(`${e.type} ${e.key}`),
    });
    const token = (from: Endpoint, msg: V2Encodable): Uint8Array => {
      out.length = 0;
      server.handle(0, from, encodeV2(msg));
      const reply = out.find((m) => m.type === 'registered');
      assert.ok(reply?.type === 'registered');
      return reply.token;
    };
    const base = { requestId: 1, session: 'game', nickname: 'N', candidates: [] };
    const host = token(HOST, { ...base, type: 'host', maxPlayers: 2, name: 'h' });
    const join = token(JOINER, { ...base, type: 'join', name: 'j' });
    for (const [from, t] of [
      [HOST, host],
      [JOINER, join],
    ] as const) {
      server.handle(
        1,
        from,
        encodeV2({ type: 'keepalive', requestId: 2, session: 'game', token: t, lobbyVersion: 0 }),
      );
    }
    assert.equal(counters.sessionsStarted, 1);
    assert.equal(server.startedCount, 1);
    out.length = 0;
    return { server, counters, events, out, host };
  }

  test('a host close in the 15 s after the start tells the others but counts no second ending', () => {
    const t = startedGame();
    t.server.handle(
      2,
      HOST,
      encodeV2({ type: 'close', requestId: 3, session: 'game', token: t.host, reason: 'bye' }),
    );
    assert.ok(
      t.out.some((m) => m.type === 'closed' && m.reason === 'bye'),
      'wire unchanged',
    );
    assert.equal(t.server.sessionCount, 0);
    assert.equal(t.counters.sessionsStarted, 1);
    assert.equal(t.counters.sessionsClosed, 0);
    assert.deepEqual(t.events, ['created game', 'started game']);
  });

  test('shutdown counts the waiting lobbies it closes, and not the started sessions it drops', () => {
    const t = startedGame();
    const counters = t.counters;
    t.server.handle(
      3,
      HOST,
      encodeV2({
        type: 'host',
        requestId: 4,
        session: 'lobby',
        maxPlayers: 2,
        name: 'h',
        nickname: 'N',
        candidates: [],
      }),
    );
    t.server.shutdown(4, 'stopping');
    assert.equal(t.server.sessionCount, 0);
    assert.equal(counters.sessionsCreated, 2);
    assert.equal(counters.sessionsStarted, 1);
    assert.equal(counters.sessionsClosed, 1);
    assert.deepEqual(t.events, ['created game', 'started game', 'created lobby', 'closed lobby']);
  });
});
