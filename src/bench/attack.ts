/**
 * Abuse from one source (issue 15; docs/security.md, "Measured under attack"): floods that
 * one loopback socket sends at the highest rate it reaches, and legit v2 and legacy lobbies
 * run beside them, each from addresses of their own (127.0.0.0/8 is all local on Linux), with
 * their latency from the first request to the last `peers`. Used by test/abuse.test.ts and by
 * `npm run bench`. Traffic goes only to loopback; every loop is bounded in count and time.
 */
import dgram from 'node:dgram';
import { encodeV2, type V2Message } from '../protocol/index.js';

/** Where the attacker's socket binds: one source, apart from every legit player. */
export const ATTACKER_ADDRESS = '127.0.0.66';
/** A legit step unanswered this long fails the lobby. */
export const LEGIT_TIMEOUT_MS = 3000;
/**
 * The legit lobbies measured beside a flood: started at a steady rate (open loop), a few in
 * flight. Back-to-back lobbies (thousands a second) would measure the server's garbage
 * collection of its own lobby churn (stalls of 30-70 ms with no flood at all) instead of the
 * flood; this rate is still far above what one server's players create.
 */
export const LEGIT_PROBE = { ratePerS: 100, concurrency: 4 } as const;
/** Datagrams the attacker sends before it yields to the event loop once. */
const FLOOD_BATCH = 64;

export type AttackKind =
  | 'v2_memory'
  | 'v2_host'
  | 'v2_join'
  | 'v2_keepalive'
  | 'v2_bad_version'
  | 'v2_lobby_lock'
  | 'legacy_rs'
  | 'legacy_rc'
  | 'legacy_garbage';

export const ATTACK_KINDS: readonly AttackKind[] = [
  'v2_memory',
  'v2_host',
  'v2_join',
  'v2_keepalive',
  'v2_bad_version',
  'v2_lobby_lock',
  'legacy_rs',
  'legacy_rc',
  'legacy_garbage',
];

const LONG_V6 = '2001:0db8:0000:0000:0000:0000:0000:0001';

function text(n: number, seed: string): string {
  return `${seed}${'x'.repeat(n)}`.slice(0, n);
}

function bindAt(address: string): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, address, () => {
      socket.off('error', reject);
      socket.on('error', () => {});
      resolve(socket);
    });
  });
}

function v2(msg: Exclude<V2Message, { type: 'punch' | 'punch_ack' }>): Buffer {
  return Buffer.from(encodeV2(msg));
}

export interface AttackResult {
  readonly sent: number;
  readonly replies: number;
  readonly durationMs: number;
}

/**
 * Floods `port` on 127.0.0.1 from one socket at `ATTACKER_ADDRESS` until `until` (performance
 * clock) or `maxDatagrams`. `v2_memory` is the worst case for memory: 32-player lobbies with
 * every field at its largest, each member validated by a keepalive with the token it got.
 * `sessionsToLock` names the sessions `v2_lobby_lock` keeps joining (re-sent every 50 ms).
 */
export async function flood(
  kind: AttackKind,
  port: number,
  until: number,
  options: {
    maxDatagrams?: number;
    sessionsToLock?: () => readonly string[];
    /** Datagrams a second at most (default: as fast as this machine sends). */
    ratePerS?: number;
  } = {},
): Promise<AttackResult> {
  const socket = await bindAt(ATTACKER_ADDRESS);
  const startedAt = performance.now();
  const max = options.maxDatagrams ?? 50_000_000;
  let sent = 0;
  let replies = 0;
  let n = 0;
  socket.on('message', (data) => {
    replies++;
    // v2_memory validates every member it registered: keepalive with the token from `registered`.
    if (kind !== 'v2_memory' || data[4] !== 0x20 || data.length < 25) return;
    const id = data.readUInt32BE(5);
    const token = new Uint8Array(data.subarray(9, 25));
    const session = memorySession(id >>> 5);
    socket.send(
      v2({ type: 'keepalive', requestId: id, session, token, lobbyVersion: 0 }),
      port,
      '127.0.0.1',
    );
  });
  const candidates = Array.from({ length: 4 }, (_, i) => ({ address: LONG_V6, port: 1000 + i }));
  const next = (): Buffer | Buffer[] => {
    const i = n++;
    switch (kind) {
      case 'v2_memory': {
        const lobby = i >>> 5;
        const slot = i & 31;
        const base = {
          requestId: (lobby << 5) | slot,
          session: memorySession(lobby),
          name: text(32, `m${slot}-`),
          nickname: text(32, 'N'),
          candidates,
        };
        return slot === 0
          ? v2({ type: 'host', maxPlayers: 32, ...base })
          : v2({ type: 'join', ...base });
      }
      case 'v2_host':
        return v2({
          type: 'host',
          requestId: i + 1,
          session: `h${i}`,
          maxPlayers: 32,
          name: 'h',
          nickname: '',
          candidates: [],
        });
      case 'v2_join':
        return v2({
          type: 'join',
          requestId: i + 1,
          session: `j${i % 1000}`,
          name: `n${i}`,
          nickname: '',
          candidates: [],
        });
      case 'v2_keepalive':
        return v2({
          type: 'keepalive',
          requestId: i + 1,
          session: `k${i % 1000}`,
          token: new Uint8Array(16),
          lobbyVersion: 0,
        });
      case 'v2_bad_version':
        return Buffer.from([0x89, 0x48, 0x50, 0x03, 0x01, 0, 0, 0, 1]);
      case 'v2_lobby_lock':
        return Buffer.alloc(0);
      case 'legacy_rs':
        return Buffer.from(`rs:a${i}:16`);
      case 'legacy_rc':
        return Buffer.from(`rc:n${i}:a${i % 16}:${text(32, 'N')}`);
      case 'legacy_garbage':
        return Buffer.from(`zz:${i}`);
    }
  };
  if (kind === 'v2_lobby_lock') {
    // Two never-answering sources (no keepalive ever) re-send `join` every 50 ms.
    const second = await bindAt('127.0.0.67');
    try {
      while (performance.now() < until && sent < max) {
        for (const session of options.sessionsToLock?.() ?? []) {
          for (const [k, s] of [socket, second].entries()) {
            s.send(
              v2({
                type: 'join',
                requestId: 7,
                session,
                name: `lock${k}`,
                nickname: 'L',
                candidates: [],
              }),
              port,
              '127.0.0.1',
            );
            sent++;
          }
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      second.close();
      socket.close();
    }
    return { sent, replies, durationMs: performance.now() - startedAt };
  }
  try {
    while (performance.now() < until && sent < max) {
      for (let b = 0; b < FLOOD_BATCH; b++) {
        socket.send(next() as Buffer, port, '127.0.0.1');
        sent++;
      }
      const ahead =
        options.ratePerS === undefined
          ? 0
          : (sent / options.ratePerS) * 1000 - (performance.now() - startedAt);
      if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
      else await new Promise((r) => setImmediate(r));
    }
  } finally {
    socket.close();
  }
  return { sent, replies, durationMs: performance.now() - startedAt };
}

function memorySession(lobby: number): string {
  return text(64, `mem${lobby}-`);
}

/** A legit player's address: one per player of every lobby (2^20 of them per protocol). */
function legitAddress(protocol: 0 | 1, player: number): string {
  return `127.${20 + protocol * 32 + ((player >>> 16) & 31)}.${(player >>> 8) & 255}.${player & 255}`;
}

class Player {
  readonly socket: dgram.Socket;
  readonly inbox: Buffer[] = [];
  #wake: (() => void) | undefined;

  constructor(socket: dgram.Socket) {
    this.socket = socket;
    socket.on('message', (d) => {
      this.inbox.push(d);
      this.#wake?.();
    });
  }

  /** The first datagram that `match` accepts, or throws after `LEGIT_TIMEOUT_MS`. */
  async wait(match: (d: Buffer) => boolean, deadline: number): Promise<Buffer> {
    for (;;) {
      const i = this.inbox.findIndex(match);
      if (i !== -1) return this.inbox.splice(i, 1)[0] as Buffer;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error('legit lobby step timed out');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }
}

/** Runs one 2-player v2 lobby (host, join, keepalives, autostart); resolves its latency. */
async function legitV2(port: number, id: number, names: readonly string[]): Promise<number> {
  const sockets = await Promise.all([
    bindAt(legitAddress(1, 2 * id)),
    bindAt(legitAddress(1, 2 * id + 1)),
  ]);
  const [host, joiner] = sockets.map((s) => new Player(s)) as [Player, Player];
  const session = names[0] as string;
  const t0 = performance.now();
  const deadline = t0 + LEGIT_TIMEOUT_MS;
  try {
    const register = async (p: Player, msg: Buffer): Promise<Uint8Array> => {
      for (;;) {
        p.socket.send(msg, port, '127.0.0.1');
        try {
          const reply = await p.wait(
            (d) => d[4] === 0x20 || d[4] === 0x22,
            Math.min(deadline, performance.now() + 300),
          );
          if (reply[4] === 0x22) throw new Error('refused');
          return new Uint8Array(reply.subarray(9, 25));
        } catch (e) {
          if ((e as Error).message === 'refused' || performance.now() >= deadline) throw e;
        }
      }
    };
    const hostToken = await register(
      host,
      v2({
        type: 'host',
        requestId: 1,
        session,
        maxPlayers: 2,
        name: 'host',
        nickname: 'H',
        candidates: [],
      }),
    );
    // Like the real client, a keepalive is re-sent until answered; here until the game starts.
    const keepUntilPeers = async (p: Player, token: Uint8Array): Promise<void> => {
      const keepalive = v2({ type: 'keepalive', requestId: 2, session, token, lobbyVersion: 0 });
      for (;;) {
        p.socket.send(keepalive, port, '127.0.0.1');
        try {
          await p.wait((d) => d[4] === 0x24, Math.min(deadline, performance.now() + 300));
          return;
        } catch (e) {
          if (performance.now() >= deadline) throw e;
        }
      }
    };
    const hostStarted = keepUntilPeers(host, hostToken);
    // Rejected only past the deadline, and then awaited below: never unhandled.
    hostStarted.catch(() => {});
    let joinToken: Uint8Array | undefined;
    while (joinToken === undefined) {
      try {
        joinToken = await register(
          joiner,
          v2({
            type: 'join',
            requestId: 1,
            session,
            name: 'joiner',
            nickname: 'J',
            candidates: [],
          }),
        );
      } catch (e) {
        if (performance.now() >= deadline) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await Promise.all([hostStarted, keepUntilPeers(joiner, joinToken)]);
    return performance.now() - t0;
  } finally {
    for (const s of sockets) s.close();
  }
}

/** Runs one 2-player legacy lobby (rs, rc, rc, autostart `peers:`); resolves its latency. */
async function legitLegacy(port: number, id: number, key: string): Promise<number> {
  const sockets = await Promise.all([
    bindAt(legitAddress(0, 2 * id)),
    bindAt(legitAddress(0, 2 * id + 1)),
  ]);
  const [host, joiner] = sockets.map((s) => new Player(s)) as [Player, Player];
  const t0 = performance.now();
  const deadline = t0 + LEGIT_TIMEOUT_MS;
  const isText = (prefix: string) => (d: Buffer) => d.toString('latin1').startsWith(prefix);
  try {
    host.socket.send(`rs:${key}:2`, port, '127.0.0.1');
    await host.wait(isText('ok:'), deadline);
    host.socket.send(`rc:h:${key}:H`, port, '127.0.0.1');
    await host.wait(isText('lobby:'), deadline);
    joiner.socket.send(`rc:j:${key}:J`, port, '127.0.0.1');
    await Promise.all([
      host.wait(isText('peers:'), deadline),
      joiner.wait(isText('peers:'), deadline),
    ]);
    return performance.now() - t0;
  } finally {
    for (const s of sockets) s.close();
  }
}

export interface LegitFigures {
  readonly completed: number;
  readonly failed: number;
  /** Latencies (ms) of completed lobbies, ascending. */
  readonly latenciesMs: readonly number[];
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/**
 * Runs `concurrency` legit lobbies of `protocol` at a time, back to back, until `until` or
 * `maxLobbies`; each from fresh addresses. `onSession` learns every v2 session name first (a
 * lobby-lock attack aims at them).
 */
export async function legitLoad(
  protocol: 'v2' | 'legacy',
  port: number,
  until: number,
  options: {
    concurrency?: number;
    maxLobbies?: number;
    /** Lobbies a second this load starts at most (default: back to back). */
    ratePerS?: number;
    firstId: number;
    onSession?: (name: string) => void;
  },
): Promise<LegitFigures> {
  const latencies: number[] = [];
  let failed = 0;
  let next = options.firstId;
  let started = 0;
  const max = options.maxLobbies ?? 1_000_000;
  const startedAt = performance.now();
  const worker = async (): Promise<void> => {
    while (performance.now() < until && started < max) {
      // Open loop: lobby k starts at k / ratePerS whatever the server's latency.
      const due =
        options.ratePerS === undefined ? 0 : startedAt + (started * 1000) / options.ratePerS;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (performance.now() >= until) break;
      started++;
      const id = next++;
      const name = `legit${id}`;
      options.onSession?.(name);
      try {
        latencies.push(
          protocol === 'v2'
            ? await legitV2(port, id & 0x7ffff, [name])
            : await legitLegacy(port, id & 0x7ffff, name),
        );
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 4 }, worker));
  latencies.sort((a, b) => a - b);
  return { completed: latencies.length, failed, latenciesMs: latencies };
}

let lastLegitId = 1;
/** A first lobby id no earlier call handed out: a run of legit lobbies gets fresh addresses. */
export function freshLegitId(): number {
  lastLegitId += 20_000;
  return lastLegitId;
}

/**
 * `LEGIT_PROBE` lobbies of both protocols until `until`, from fresh addresses; `onSession`
 * learns every v2 session name (a lobby-lock flood aims at them). Resolves [v2, legacy].
 */
export function legitBoth(
  port: number,
  until: number,
  onSession?: (name: string) => void,
): Promise<[LegitFigures, LegitFigures]> {
  return Promise.all([
    legitLoad('v2', port, until, {
      firstId: freshLegitId(),
      ...LEGIT_PROBE,
      ...(onSession === undefined ? {} : { onSession }),
    }),
    legitLoad('legacy', port, until, { firstId: freshLegitId(), ...LEGIT_PROBE }),
  ]);
}
