/**
 * The JSON lines our programs print, defined once: the CLIs write them through these types,
 * and the NAT lab, the benchmarks and the tests read them back through `parseCliLine`, so a
 * renamed field breaks the build instead of a lab run. docs/client.md and docs/server.md quote
 * these lines: a change here is a change of the documented output.
 *
 * No I/O and no imports of the CLIs themselves (they run on import): only types from them.
 */

import type { PeerFailureCause, PunchPath } from '../client/index.js';
import type { LegacyClientEvent } from '../client-legacy/index.js';
import type { NatClass } from '../protocol/index.js';
import type { DoctorJson } from './doctor.js';

/** A peer in a `punched` line of `holepunch-client --json`. */
export interface PunchedPeerLine {
  readonly name: string;
  readonly nickname: string;
  readonly isHost: boolean;
  readonly address: string;
  readonly port: number;
  readonly path: PunchPath;
}

/** `holepunch-client host|join --json` (src/cli/client.ts). */
export type ClientLine =
  | {
      readonly event: 'registered';
      readonly session: string;
      readonly name: string;
      readonly isHost: boolean;
      readonly localPort: number;
      readonly publicAddress: string;
      readonly publicPort: number;
      readonly nat: NatClass;
    }
  | { readonly event: 'left'; readonly nickname: string }
  | { readonly event: 'lobby'; readonly nicknames: readonly string[]; readonly maxPlayers: number }
  | { readonly event: 'waiting'; readonly for: 'start' }
  | { readonly event: 'waiting'; readonly for: 'host'; readonly session: string }
  | {
      readonly event: 'punched';
      readonly elapsedMs: number;
      readonly localPort: number;
      readonly publicAddress: string;
      readonly publicPort: number;
      readonly hostAddress: string;
      readonly hostPort: number;
      readonly peers: readonly PunchedPeerLine[];
    }
  | RttLine
  /** The host kept the session open (`--keep-open`): we stay this long for late joiners. */
  | { readonly event: 'open'; readonly ms: number }
  /** A late joiner (or a player back under its name) is punched; its `rtt` line follows. */
  | { readonly event: 'joined'; readonly peer: PunchedPeerLine }
  | { readonly event: 'peer_failed'; readonly peer: string; readonly cause: PeerFailureCause }
  | { readonly event: 'peer_left'; readonly peer: string; readonly why: 'left' | 'silent' }
  | { readonly event: 'session_ended'; readonly code: string; readonly reason: string }
  | { readonly event: 'interrupted'; readonly signal: string }
  | { readonly event: 'failed'; readonly code: string; readonly message: string };

/** The game-datagram test's result for one peer, the same line in both client CLIs. */
export interface RttLine {
  readonly event: 'rtt';
  readonly peer: string;
  readonly rttMs: number | null;
  readonly sent: number;
  readonly received: number;
}

/**
 * `node dist/src/client-legacy/cli.js --json`: the legacy state machine's events (its
 * internal `peers` progress excepted), the CLI's own `failed` (timeout, a socket error) and
 * the same `rtt` lines as the v2 CLI, so the lab judges both clients with one code path.
 */
export type LegacyClientLine =
  | Exclude<LegacyClientEvent, { readonly event: 'peers' }>
  | { readonly event: 'failed'; readonly code: 'timeout' | 'bad_request'; readonly message: string }
  | RttLine;

/** `holepunch-client doctor --json`: the diagnosis, or why there is none. */
export type DoctorLine =
  | DoctorJson
  | { readonly server: string; readonly error: string; readonly message: string };

/**
 * `holepunch-server`: pino records. Only the fields every record has are typed here, plus the
 * records the lab and the tests wait for (`ServerRecord<'listening'>`); the rest of a record
 * is whatever the server logged with it.
 */
export interface ServerLine {
  readonly level: number;
  readonly time: number;
  readonly pid: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

interface ServerRecords {
  readonly listening: {
    readonly address: string;
    readonly port: number;
    readonly family: 'IPv4' | 'IPv6';
    readonly relayPorts?: string;
    /** The alternate port NAT probes are answered from; absent without one. */
    readonly altPort?: number;
  };
  /** The default alternate port (PORT+1) could not be bound: the server runs without it. */
  readonly 'alternate port unavailable': { readonly altPort?: number; readonly code?: string };
  readonly 'metrics listening': { readonly address: string; readonly port: number };
  readonly 'shutting down': { readonly signal: string; readonly drainSeconds: number };
  readonly 'shutdown failed': { readonly err: unknown };
  readonly 'cannot start': { readonly err: unknown };
}

export type ServerMessage = keyof ServerRecords;
export type ServerRecord<M extends ServerMessage> = ServerLine & {
  readonly msg: M;
} & ServerRecords[M];
/** What a shell passes to pino for record `M` (pino adds level, time, pid and msg). */
export type ServerRecordFields<M extends ServerMessage> = ServerRecords[M];

interface MappedEndpoint {
  readonly address: string;
  readonly port: number;
}

/** src/natlab/probe-agent.ts, the lab's STUN-like probe. */
export type ProbeAgentLine =
  | { readonly event: 'observing'; readonly endpoints: readonly string[] }
  | {
      readonly event: 'probed';
      readonly localPort: number;
      readonly mappedA?: MappedEndpoint;
      readonly mappedB?: MappedEndpoint;
      readonly fromOtherPort: boolean;
      readonly fromOtherAddress: boolean;
      readonly collisionPort: number;
      readonly mappedCollision?: MappedEndpoint;
    }
  | { readonly event: 'hairpin'; readonly target: string; readonly answered: boolean };

/** src/bench/echo-server.ts, the benchmark's reference server. */
export type EchoServerLine = { readonly event: 'listening'; readonly port: number };

export interface CliLines {
  readonly client: ClientLine;
  readonly 'legacy-client': LegacyClientLine;
  readonly doctor: DoctorLine;
  readonly server: ServerLine;
  readonly 'probe-agent': ProbeAgentLine;
  readonly 'echo-server': EchoServerLine;
}
export type CliName = keyof CliLines;

/** The discriminants (`event`) of a union of lines. */
export type EventOf<T> = T extends { readonly event: infer K extends string } ? K : never;
/** A line of one CLI whose discriminant (`event`) is `E`. */
export type CliEvent<C extends CliName, E extends EventOf<CliLines[C]>> = Extract<
  CliLines[C],
  { readonly event: E }
>;

export type ParsedLine<T> =
  | { readonly ok: true; readonly line: T }
  | { readonly ok: false; readonly error: string };

/** The one way a CLI writes a line: `satisfies` at the call site is not needed, the type is. */
export function formatCliLine<C extends CliName>(_cli: C, line: CliLines[C]): string {
  return `${JSON.stringify(line)}\n`;
}

/** One JSON object from one line of text; never throws (programs print other lines too). */
export function parseJsonObject(text: string): ParsedLine<Readonly<Record<string, unknown>>> {
  const trimmed = text.trim();
  if (!trimmed.startsWith('{')) return { ok: false, error: 'not a JSON object' };
  let value: unknown;
  try {
    value = JSON.parse(trimmed);
  } catch (error) {
    return { ok: false, error: `not JSON: ${(error as Error).message}` };
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? { ok: true, line: value as Record<string, unknown> }
    : { ok: false, error: 'not a JSON object' };
}

/** `typeof` names, plus 'array' and 'null', that a field may have. */
type Kind = 'string' | 'number' | 'boolean' | 'object' | 'array' | 'null';
type Shape = Readonly<Record<string, readonly Kind[]>>;

const S: readonly Kind[] = ['string'];
const N: readonly Kind[] = ['number'];
const B: readonly Kind[] = ['boolean'];
const A: readonly Kind[] = ['array'];

const SERVER_SHAPES: { readonly [M in ServerMessage]?: Shape } = {
  listening: { address: S, port: N, family: S },
  'metrics listening': { address: S, port: N },
};

const RTT: Shape = { peer: S, rttMs: ['number', 'null'], sent: N, received: N };
const FAILED: Shape = { code: S, message: S };

/**
 * The fields each line must carry, by discriminant: what a reader may rely on without
 * checking. Optional fields are left out (a reader checks them anyway).
 */
const EVENT_SHAPES: {
  readonly [C in Exclude<CliName, 'doctor' | 'server'>]: {
    readonly [E in EventOf<CliLines[C]>]: Shape;
  };
} = {
  client: {
    registered: {
      session: S,
      name: S,
      isHost: B,
      localPort: N,
      publicAddress: S,
      publicPort: N,
    },
    left: { nickname: S },
    lobby: { nicknames: A, maxPlayers: N },
    waiting: { for: S },
    punched: { elapsedMs: N, localPort: N, publicAddress: S, publicPort: N, peers: A },
    rtt: RTT,
    open: { ms: N },
    joined: { peer: ['object'] },
    peer_failed: { peer: S, cause: S },
    peer_left: { peer: S, why: S },
    session_ended: { code: S, reason: S },
    interrupted: { signal: S },
    failed: FAILED,
  },
  'legacy-client': {
    registered: { publicPort: N },
    lobby: { players: A, maxPlayers: N },
    punched: { elapsedMs: N, localPort: N, peers: A },
    rtt: RTT,
    failed: FAILED,
  },
  'probe-agent': {
    observing: { endpoints: A },
    probed: { localPort: N, fromOtherPort: B, fromOtherAddress: B, collisionPort: N },
    hairpin: { target: S, answered: B },
  },
  'echo-server': { listening: { port: N } },
};

function kindOf(value: unknown): Kind | 'other' {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  const t = typeof value;
  return t === 'string' || t === 'number' || t === 'boolean' || t === 'object' ? t : 'other';
}

function checkShape(value: Readonly<Record<string, unknown>>, shape: Shape): string | undefined {
  for (const [field, kinds] of Object.entries(shape)) {
    const kind = kindOf(value[field]);
    if (!(kinds as readonly string[]).includes(kind)) {
      return `${field} is ${value[field] === undefined ? 'missing' : kind}, not ${kinds.join(' or ')}`;
    }
  }
  return undefined;
}

/** Checks an already-parsed JSON value against the lines of `cli`; never throws. */
export function toCliLine<C extends CliName>(cli: C, value: unknown): ParsedLine<CliLines[C]> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return { ok: false, error: 'not a JSON object' };
  const record = value as Readonly<Record<string, unknown>>;
  let problem: string | undefined;
  if (cli === 'server') {
    problem = checkShape(record, { level: N, time: N, msg: S });
  } else if (cli === 'doctor') {
    problem =
      typeof record.error === 'string'
        ? checkShape(record, { server: S, message: S })
        : checkShape(record, { server: S, verdict: S, publicAddresses: A, notes: A });
  } else {
    const shapes = EVENT_SHAPES[cli as keyof typeof EVENT_SHAPES] as Readonly<
      Record<string, Shape>
    >;
    const event = record.event;
    if (typeof event !== 'string') problem = 'no event';
    else if (!Object.hasOwn(shapes, event)) problem = `unknown event ${JSON.stringify(event)}`;
    else problem = checkShape(record, shapes[event] as Shape);
  }
  return problem === undefined
    ? { ok: true, line: record as unknown as CliLines[C] }
    : { ok: false, error: `not a ${cli} line: ${problem}` };
}

/** Parses one line a CLI printed; an error (never an exception) for anything else. */
export function parseCliLine<C extends CliName>(cli: C, text: string): ParsedLine<CliLines[C]> {
  const parsed = parseJsonObject(text);
  return parsed.ok ? toCliLine(cli, parsed.line) : parsed;
}

/** The first line of `cli` with event `event` among collected JSON objects. */
export function findCliLine<C extends CliName, E extends EventOf<CliLines[C]>>(
  lines: readonly unknown[],
  cli: C,
  event: E,
): CliEvent<C, E> | undefined {
  for (const value of lines) {
    const parsed = toCliLine(cli, value);
    if (parsed.ok && (parsed.line as { event?: unknown }).event === event)
      return parsed.line as CliEvent<C, E>;
  }
  return undefined;
}

/** True when `line` is a line of `cli` with one of `events`: a `waitForLine` predicate. */
export function isCliEvent<C extends CliName, E extends EventOf<CliLines[C]>>(
  line: unknown,
  cli: C,
  ...events: readonly E[]
): line is CliEvent<C, E> {
  const parsed = toCliLine(cli, line);
  return (
    parsed.ok && (events as readonly unknown[]).includes((parsed.line as { event?: unknown }).event)
  );
}

/** True when `line` is the server's record `msg` (narrowed to its fields). */
export function isServerRecord<M extends ServerMessage>(
  line: unknown,
  msg: M,
): line is ServerRecord<M> {
  const parsed = toCliLine('server', line);
  if (!parsed.ok || parsed.line.msg !== msg) return false;
  const shape = SERVER_SHAPES[msg];
  return shape === undefined || checkShape(parsed.line, shape) === undefined;
}
