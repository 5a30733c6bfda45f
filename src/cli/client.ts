#!/usr/bin/env node
// `holepunch-client host|join SESSION [options]`: one traversal through a rendezvous server,
// then a round-trip test with every peer over the punched path. With --json, one JSON object
// per line (docs/client.md lists them); the NAT lab parses these lines, keep them stable.
import { randomBytes } from 'node:crypto';
import type dgram from 'node:dgram';
import { parseArgs } from 'node:util';
import { HolePunchClient, type PunchedPeer } from '../client/index.js';
import { HolePunchError } from '../errors.js';
import { MAX_KEEP_OPEN_S } from '../protocol/index.js';
import { runDoctor } from './doctor.js';
import { type ClientLine, formatCliLine, type PunchedPeerLine } from './lines.js';

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
/** Interrupted by SIGINT (Ctrl-C) or SIGTERM, after leaving the lobby: 128 + the signal. */
const EXIT_SIGNAL: Readonly<Record<string, number>> = { SIGINT: 130, SIGTERM: 143 };
/** A full lobby that has not started after this long is waiting for its host. */
const FULL_LOBBY_HINT_MS = 1_500;

/**
 * After the punch, test datagrams go to each peer every `TEST_PING_INTERVAL_MS` until
 * `TEST_ANSWERS_WANTED` came back or `TEST_MAX_PINGS` were sent: a lossy path (a lab with
 * 30% loss on each router's uplink loses ~75% of round trips) still gets answers.
 */
const TEST_ANSWERS_WANTED = 3;
const TEST_MAX_PINGS = 30;
const TEST_PING_INTERVAL_MS = 100;
/** After the last ping, wait this long for late answers (a loaded machine answers late). */
const TEST_REPLY_WAIT_MS = 1000;
/** `done` datagrams sent to each peer when our test ends (several: they may be lost). */
const TEST_DONE_COPIES = 3;
/**
 * Keep answering peers' pings (and late punches) after our own test, so a peer that
 * punched later than us still gets its answers: until every peer said `done`, or all
 * went quiet for `LINGER_QUIET_MS`, and never longer than `LINGER_MAX_MS`.
 */
const LINGER_QUIET_MS = 1500;
const LINGER_MAX_MS = 5000;
const TEST_PREFIX = 'hp-test:';

const USAGE = `Usage: holepunch-client host SESSION [options]
       holepunch-client join SESSION [options]
       holepunch-client doctor [--server HOST:PORT] [--json]   (see doctor --help)

Registers with a HolePunch rendezvous server (v2 protocol), waits for the lobby,
punches a direct UDP path to every peer, then exchanges test datagrams with each
peer (until ${TEST_ANSWERS_WANTED} answered, at most ${TEST_MAX_PINGS}) and reports the round-trip time.

Options:
  --server HOST:PORT     rendezvous server (default 127.0.0.1:4000)
  --name NAME            unique member name (default: random)
  --nickname NICK        display name (default: the name)
  --max-players N        host: lobby size, 2-32 (default 2)
  --timeout MS           fail if not punched within MS (default 60000)
  --local-port PORT      local UDP port (default: ephemeral)
  --finalize-after MS    host: exchange peers after MS even if the lobby is not full
  --keep-open MS         host: keep the session open MS after its start; late joiners
                         and players coming back under their name are punched and
                         tested by everyone still running, who stay until it closes
  --no-relay             do not use the server's relay for peers without a direct
                         path (by default they play through it, path "relay");
                         --relay is accepted and changes nothing
  --json                 one JSON object per line on stdout
  -h, --help             show this help

Exit status: 0 punched and tested, 1 failed, 2 bad usage.
`;

interface CliOptions {
  readonly isHost: boolean;
  readonly session: string;
  readonly server: { address: string; port: number };
  readonly name: string;
  readonly nickname: string;
  readonly maxPlayers: number;
  readonly timeoutMs: number;
  readonly localPort: number;
  readonly finalizeAfterMs: number | undefined;
  readonly keepOpenMs: number;
  readonly json: boolean;
  readonly relay: boolean;
}

type Parsed =
  | { kind: 'run'; options: CliOptions }
  | { kind: 'help' }
  | { kind: 'error'; message: string };

const INTEGER = /^[0-9]+$/;

function intOption(
  value: string | undefined,
  name: string,
  min: number,
  max: number,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (!INTEGER.test(value) || Number(value) < min || Number(value) > max) {
    throw new Error(`--${name} must be an integer ${min}-${max}`);
  }
  return Number(value);
}

export function parseClientArgs(argv: readonly string[]): Parsed {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        server: { type: 'string' },
        name: { type: 'string' },
        nickname: { type: 'string' },
        'max-players': { type: 'string' },
        timeout: { type: 'string' },
        'local-port': { type: 'string' },
        'finalize-after': { type: 'string' },
        'keep-open': { type: 'string' },
        json: { type: 'boolean' },
        relay: { type: 'boolean' },
        'no-relay': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) return { kind: 'help' };
    const [mode, session, ...rest] = positionals;
    if (mode !== 'host' && mode !== 'join')
      return { kind: 'error', message: 'expected host or join' };
    if (session === undefined || session === '')
      return { kind: 'error', message: 'missing SESSION' };
    if (rest.length > 0) return { kind: 'error', message: `unexpected argument ${rest[0]}` };
    if (mode === 'join' && values['keep-open'] !== undefined)
      return { kind: 'error', message: '--keep-open is for the host' };
    const serverText = values.server ?? '127.0.0.1:4000';
    const colon = serverText.lastIndexOf(':');
    const host = serverText.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    const portText = serverText.slice(colon + 1);
    if (colon <= 0 || !INTEGER.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      return { kind: 'error', message: '--server must be HOST:PORT' };
    }
    const name = values.name ?? `player-${randomBytes(4).toString('hex')}`;
    const finalize = values['finalize-after'];
    return {
      kind: 'run',
      options: {
        isHost: mode === 'host',
        session,
        server: { address: host, port: Number(portText) },
        name,
        nickname: values.nickname ?? name,
        maxPlayers: intOption(values['max-players'], 'max-players', 2, 32, 2),
        timeoutMs: intOption(values.timeout, 'timeout', 1, 2 ** 31 - 1, 60_000),
        localPort: intOption(values['local-port'], 'local-port', 0, 65535, 0),
        finalizeAfterMs:
          finalize === undefined
            ? undefined
            : intOption(finalize, 'finalize-after', 0, 2 ** 31 - 1, 0),
        keepOpenMs: intOption(values['keep-open'], 'keep-open', 0, MAX_KEEP_OPEN_S * 1000, 0),
        json: values.json === true,
        relay: values['no-relay'] !== true,
      },
    };
  } catch (err) {
    return { kind: 'error', message: (err as Error).message };
  }
}

interface PeerStats {
  sent: number;
  received: number;
  rtts: number[];
}

/** What we heard from a peer's own test (it may start before our punch completes). */
interface PeerTest {
  pinged: boolean;
  done: boolean;
}

export async function runClient(o: CliOptions): Promise<number> {
  const out = (event: ClientLine, text: string): void => {
    process.stdout.write(o.json ? formatCliLine('client', event) : `${text}\n`);
  };
  const client = new HolePunchClient({ server: o.server, port: o.localPort, relay: o.relay });
  const startedAt = performance.now();
  const stats = new Map<string, PeerStats>();
  let lastPingSeenAt = 0;
  const peerTests = new Map<string, PeerTest>();
  client.on('message', (data: Buffer, rinfo: dgram.RemoteInfo) => {
    const text = data.toString('utf8');
    if (!text.startsWith(TEST_PREFIX)) return;
    const [, kind, seqText, ...nameParts] = text.split(':');
    const peer = nameParts.join(':');
    const seq = Number(seqText);
    if (kind === 'ping' || kind === 'done') {
      let t = peerTests.get(peer);
      if (t === undefined) {
        t = { pinged: false, done: false };
        peerTests.set(peer, t);
      }
      lastPingSeenAt = performance.now();
      if (kind === 'done') {
        t.done = true;
        return;
      }
      t.pinged = true;
      client.send(`${TEST_PREFIX}pong:${seqText}:${o.name}`, rinfo.port, rinfo.address);
    } else if (kind === 'pong') {
      const s = stats.get(peer);
      const sentAt = pingTimes.get(`${peer}\n${seq}`);
      if (s && sentAt !== undefined) {
        pingTimes.delete(`${peer}\n${seq}`);
        s.received++;
        s.rtts.push(performance.now() - sentAt);
      }
    }
  });
  const pingTimes = new Map<string, number>();
  client.on('sessionRegistered', (e) =>
    out(
      {
        event: 'registered',
        session: e.session,
        name: o.name,
        isHost: e.isHost,
        localPort: e.localPort,
        publicAddress: e.publicAddress,
        publicPort: e.publicPort,
        nat: e.nat,
      },
      `registered in ${e.session} as ${o.name} (local port ${e.localPort}, public ${e.publicAddress}:${e.publicPort}, NAT ${e.nat})`,
    ),
  );
  let lobby: readonly string[] = [];
  let fullHint: NodeJS.Timeout | undefined;
  client.on('lobbyUpdate', (e) => {
    // Who came and went, in words: a player who leaves or crashes drops out of the lobby.
    for (const left of lobby.filter((n) => !e.nicknames.includes(n))) {
      out({ event: 'left', nickname: left }, `${left} left the lobby`);
    }
    out(
      { event: 'lobby', nicknames: e.nicknames, maxPlayers: e.maxPlayers },
      `lobby ${e.nicknames.length}/${e.maxPlayers}: ${e.nicknames.join(', ')}`,
    );
    lobby = e.nicknames;
    clearTimeout(fullHint);
    if (e.nicknames.length < e.maxPlayers) return;
    fullHint = setTimeout(() => {
      out(
        { event: 'waiting', for: 'start' },
        o.isHost
          ? 'the lobby is full: start it with --finalize-after (or finalizePeers() in a game)'
          : 'the lobby is full; waiting for the host to start the game',
      );
    }, FULL_LOBBY_HINT_MS);
  });
  // An open session's late joiners (and players back under their name) arrive after our own
  // punch: each is named and tested while we stay (`stayOpen`).
  const late: Promise<boolean>[] = [];
  let ended: (() => void) | undefined;
  client.on('peerJoined', (p) => {
    out(
      { event: 'joined', peer: peerLine(p) },
      `${p.name} joined late, at ${p.address}:${p.port} (${p.path})`,
    );
    late.push(
      testPeers(client, o.name, [p], stats, pingTimes).then(() => reportRtt(out, p, stats)),
    );
  });
  client.on('peerFailed', (p) => {
    out(
      { event: 'peer_failed', peer: p.name, cause: p.cause },
      `could not reach ${p.name}, who joined late (${p.cause})`,
    );
    // A late joiner that went away before the punch is not our failure.
    if (p.cause !== 'left' && p.cause !== 'silent') late.push(Promise.resolve(false));
  });
  client.on('peerLeft', (e) =>
    out({ event: 'peer_left', peer: e.name, why: e.why }, `${e.name} left the session (${e.why})`),
  );
  client.on('sessionEnded', (e) => {
    out(
      { event: 'session_ended', code: e.code, reason: e.reason },
      `the session ended (${e.code}): ${e.reason}`,
    );
    ended?.();
  });
  if (!o.isHost) {
    out(
      { event: 'waiting', for: 'host', session: o.session },
      `waiting for the host of ${o.session} on ${o.server.address}:${o.server.port}…`,
    );
  }
  const abort = new AbortController();
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted = signal;
    abort.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let finalizeTimer: NodeJS.Timeout | undefined;
  if (o.isHost && o.finalizeAfterMs !== undefined) {
    finalizeTimer = setTimeout(() => {
      try {
        client.finalizePeers();
      } catch {}
    }, o.finalizeAfterMs);
  }
  try {
    const result = await client.startTraversal({
      session: o.session,
      isHost: o.isHost,
      name: o.name,
      nickname: o.nickname,
      maxPlayers: o.maxPlayers,
      timeoutMs: o.timeoutMs,
      keepOpenMs: o.keepOpenMs,
      signal: abort.signal,
    });
    clearTimeout(finalizeTimer);
    clearTimeout(fullHint);
    out(
      {
        event: 'punched',
        elapsedMs: Math.round(performance.now() - startedAt),
        localPort: result.localPort,
        publicAddress: result.publicAddress,
        publicPort: result.publicPort,
        hostAddress: result.hostAddress,
        hostPort: result.hostPort,
        peers: result.peers.map(peerLine),
      },
      `punched in ${Math.round(performance.now() - startedAt)} ms: ${result.peers
        .map((p) => `${p.name} at ${p.address}:${p.port} (${p.path})`)
        .join(', ')}`,
    );
    await testPeers(client, o.name, result.peers, stats, pingTimes);
    // Linger: the peers may still be testing us.
    const lingerStart = performance.now();
    const everyPeerDone = (): boolean =>
      result.peers.every((p) => peerTests.get(p.name)?.done === true);
    while (performance.now() - lingerStart < LINGER_MAX_MS && !everyPeerDone()) {
      const quiet = performance.now() - Math.max(lastPingSeenAt, lingerStart);
      const heardAll = result.peers.every((p) => peerTests.get(p.name)?.pinged === true);
      if (heardAll && quiet > LINGER_QUIET_MS) break;
      await sleep(50);
    }
    // Printed after the linger, so answers that came late still count.
    const answered = result.peers.map((p) => reportRtt(out, p, stats));
    if (result.openMs > 0) {
      out(
        { event: 'open', ms: result.openMs },
        `the session takes late joiners for ${Math.round(result.openMs / 1000)} s more`,
      );
      // Until the host's keep-open runs out, the session ends, or Ctrl-C.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, result.openMs);
        ended = () => {
          clearTimeout(timer);
          resolve();
        };
        abort.signal.addEventListener('abort', ended, { once: true });
      });
      answered.push(...(await Promise.all(late)));
      if (interrupted !== undefined) {
        await client.close();
        out({ event: 'interrupted', signal: interrupted }, `interrupted: left ${o.session}`);
        return EXIT_SIGNAL[interrupted] ?? EXIT_FAILED;
      }
    }
    return answered.every((ok) => ok) ? EXIT_OK : EXIT_FAILED;
  } catch (err) {
    clearTimeout(finalizeTimer);
    clearTimeout(fullHint);
    if (interrupted !== undefined) {
      await client.close();
      out({ event: 'interrupted', signal: interrupted }, `interrupted: left ${o.session}`);
      return EXIT_SIGNAL[interrupted] ?? EXIT_FAILED;
    }
    const e =
      err instanceof HolePunchError
        ? err
        : new HolePunchError('bad_request', String((err as Error).message));
    out({ event: 'failed', code: e.code, message: e.message }, `failed (${e.code}): ${e.message}`);
    return EXIT_FAILED;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await client.close();
  }
}

function peerLine(p: PunchedPeer): PunchedPeerLine {
  return {
    name: p.name,
    nickname: p.nickname,
    isHost: p.isHost,
    address: p.address,
    port: p.port,
    path: p.path,
  };
}

/** Prints a peer's `rtt` line; true when it answered at all. */
function reportRtt(
  out: (event: ClientLine, text: string) => void,
  p: PunchedPeer,
  stats: Map<string, PeerStats>,
): boolean {
  const s = stats.get(p.name) as PeerStats;
  const sorted = [...s.rtts].sort((a, b) => a - b);
  const median = sorted.length > 0 ? sorted[Math.floor(sorted.length / 2)] : undefined;
  const rttMs = median === undefined ? null : Math.round(median * 100) / 100;
  out(
    { event: 'rtt', peer: p.name, rttMs, sent: s.sent, received: s.received },
    `rtt to ${p.name}: ${rttMs === null ? 'no answer' : `${rttMs} ms`} (${s.received}/${s.sent} answered)`,
  );
  return s.received > 0;
}

async function testPeers(
  client: HolePunchClient,
  self: string,
  peers: readonly PunchedPeer[],
  stats: Map<string, PeerStats>,
  pingTimes: Map<string, number>,
): Promise<void> {
  // A peer back under its name is tested afresh.
  for (const p of peers) stats.set(p.name, { sent: 0, received: 0, rtts: [] });
  const wanting = () =>
    peers.filter((p) => {
      const s = stats.get(p.name) as PeerStats;
      return s.received < TEST_ANSWERS_WANTED && s.sent < TEST_MAX_PINGS;
    });
  for (let round = 0; round < TEST_MAX_PINGS; round++) {
    const due = wanting();
    if (due.length === 0) break;
    for (const p of due) {
      const s = stats.get(p.name) as PeerStats;
      pingTimes.set(`${p.name}\n${s.sent}`, performance.now());
      client.send(`${TEST_PREFIX}ping:${s.sent}:${self}`, p.port, p.address);
      s.sent++;
    }
    await sleep(TEST_PING_INTERVAL_MS);
  }
  const waitStart = performance.now();
  while (performance.now() - waitStart < TEST_REPLY_WAIT_MS) {
    if (peers.every((p) => (stats.get(p.name)?.received ?? 0) >= TEST_ANSWERS_WANTED)) break;
    await sleep(20);
  }
  for (const p of peers) {
    for (let i = 0; i < TEST_DONE_COPIES; i++) {
      client.send(`${TEST_PREFIX}done:0:${self}`, p.port, p.address);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main(): Promise<void> {
  if (process.argv[2] === 'doctor') {
    process.exitCode = await runDoctor(process.argv.slice(3));
    return;
  }
  const parsed = parseClientArgs(process.argv.slice(2));
  if (parsed.kind === 'help') {
    process.stdout.write(USAGE);
    process.exitCode = EXIT_OK;
    return;
  }
  if (parsed.kind === 'error') {
    process.stderr.write(`holepunch-client: ${parsed.message}\n\n${USAGE}`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  process.exitCode = await runClient(parsed.options);
}

await main();
