import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { type Logger, pino } from 'pino';
import { MAIN_SOCKET, type SocketId } from '../core/index.js';
import { UdpDriver } from '../driver/index.js';
import { HolePunchError } from '../errors.js';
import { CLOSE_REASONS } from '../protocol/index.js';
import { countRejection, createCounters, type ServerCounters } from './counters.js';
import type { MemberLifecycleEvent, SessionLifecycleEvent } from './lifecycle.js';
import { LogLimiter } from './log-limit.js';
import type { MetricsServer } from './metrics.js';
import { ALT_ADDRESS_BIT, ALT_PORT_BIT, type ServerSocket } from './probe.js';
import { isMemberEvent, RendezvousServer, type ServerEvent } from './rendezvous.js';
import { resolveServerSettings, type ServerSettings } from './settings.js';
import { MIN_RELAY_PORT, RELAY_LOG_INTERVAL_MS } from './v2-relay.js';

/** The original's port, and the CLI's default. */
export const DEFAULT_PORT = 4000;

/**
 * The alternate port, from which NAT probes are answered, is the main port plus this unless
 * told otherwise (`altPort`, `--alt-port`): without one a client cannot tell a random-port
 * (symmetric) NAT from a cone, and never tries birthday probing (docs/protocol-v2.md §6).
 */
export const DEFAULT_ALT_PORT_OFFSET = 1;

/** The warning logged when the default alternate port cannot be had. */
const ALT_PORT_UNAVAILABLE = 'alternate port unavailable';
const ALT_PORT_MISSING_EFFECT =
  'NAT probes are answered from PORT only: clients cannot tell a symmetric NAT and relay instead of punching it';

/** The metrics HTTP listener binds loopback unless told otherwise: metrics are not public. */
export const DEFAULT_METRICS_HOST = '127.0.0.1';

/** How long `close()` waits for the shutdown `close:` datagrams to leave the socket. */
export const SHUTDOWN_DRAIN_MS = 1000;

/**
 * While draining before a stop, the relay counts as idle once it forwarded nothing for this
 * long: a game still playing sends many datagrams a second, one that ended sends none.
 */
export const DRAIN_QUIET_MS = 5_000;
/** How often a drain checks whether everything is idle. */
const DRAIN_POLL_MS = 250;

/**
 * Receive buffer asked of the kernel (best effort; Linux caps it at net.core.rmem_max). The
 * default ~200 KiB holds only a few hundred datagrams during a burst of registrations.
 */
export const RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024;

/** Every server setting (`ServerSettings`, defaults there) plus the shell's own. */
export interface StartServerOptions extends Partial<ServerSettings> {
  /** UDP port; 0 picks a free one (read it back from `RunningServer.port`). Default 4000. */
  readonly port?: number;
  /**
   * Bind address (IP literal or resolvable name). Default: every interface, IPv4 and IPv6
   * (`::` dual-stack), or `0.0.0.0` where the machine has no IPv6.
   */
  readonly host?: string;
  /**
   * The alternate port NAT probes are answered from (`ServerSettings.altPort`). Default
   * (undefined): `port + DEFAULT_ALT_PORT_OFFSET`, a free port when `port` is 0; when that
   * default is taken (or `port` is 65535) the server starts without one and logs a warning
   * (`alternate port unavailable`). A port given here must be free: start fails
   * (`socket_error`) otherwise. 0: no alternate port.
   */
  readonly altPort?: number;
  /** pino logger for the startup line and lifecycle events. Default: silent. */
  readonly logger?: Logger;
  /**
   * Serve Prometheus `/metrics` and `/healthz` over HTTP on this TCP port (0 = a free one).
   * Default: no HTTP listener at all.
   */
  readonly metricsPort?: number;
  /** Bind address of the metrics listener. Default `127.0.0.1` (not public). */
  readonly metricsHost?: string;
}

export interface RunningServer {
  /** The bound address (`::`, `0.0.0.0` or the `host` given). */
  readonly address: string;
  /** The bound port (the actual one when 0 was asked for). */
  readonly port: number;
  readonly family: 'IPv4' | 'IPv6';
  /** The bound alternate port NAT probes are answered from, or 0 without one. */
  readonly altPort: number;
  /** Live counters of the core (datagrams, sessions, rejections by kind). */
  readonly counters: ServerCounters;
  /** The sans-IO core, for inspection (`core.legacy.describeSessions()`). */
  readonly core: RendezvousServer;
  /** The metrics HTTP listener, when `metricsPort` was given. */
  readonly metrics: { readonly address: string; readonly port: number } | undefined;
  /** Tells members of open sessions `close:Server shutting down`, then releases the socket. */
  close(): Promise<void>;
  /**
   * Stops gracefully: waiting lobbies are told `close:Server shutting down` at once and new
   * sessions are refused (v2 `server_full`, legacy `close:Server shutting down`), `/healthz`
   * answers 503, but started games and their relay allocations keep working until they are
   * idle (no v2 session left and nothing relayed for `DRAIN_QUIET_MS`) or `maxMs` passed;
   * then `close()`. `maxMs` 0 is `close()` at once. Resolves once closed.
   */
  drain(maxMs: number): Promise<void>;
}

/** Counts by reason that grew since `before` (which is updated), or undefined if none did. */
export function grownCounts(
  before: Record<string, number>,
  now: Readonly<Record<string, number>>,
): Record<string, number> | undefined {
  let grown: Record<string, number> | undefined;
  for (const [reason, n] of Object.entries(now)) {
    const d = n - (before[reason] ?? 0);
    if (d <= 0) continue;
    grown ??= {};
    grown[reason] = d;
    before[reason] = n;
  }
  return grown;
}

/** Binds the rendezvous server to a UDP socket and starts serving. */
export async function startServer(options: StartServerOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? pino({ enabled: false });
  const port = options.port ?? DEFAULT_PORT;
  // Before any socket is bound: a setting the core refuses must not leave one open. The
  // alternate port is settled once its socket is bound (a free one may be asked for).
  const wanted = resolveServerSettings({ ...options, altPort: 0 });
  const altPortWanted = wantedAltPort(options.altPort, port);
  if (altPortWanted.port !== undefined && altPortWanted.port === port && port !== 0) {
    throw new HolePunchError('bad_request', `the alternate port must differ from PORT ${port}`);
  }

  const socket = await bindSocket(options.host, port);
  try {
    socket.setRecvBufferSize(RECEIVE_BUFFER_BYTES);
  } catch {
    // Not permitted or not supported: the kernel default still works, with more drops.
  }
  let probeSockets: Map<ServerSocket, dgram.Socket>;
  try {
    probeSockets = await bindProbeSockets(
      wanted.altAddress,
      altPortWanted,
      options.host,
      socket,
      logger,
    );
  } catch (error) {
    socket.close();
    throw error;
  }
  const settings = {
    ...wanted,
    altPort: probeSockets.get(ALT_PORT_BIT as ServerSocket)?.address().port ?? 0,
  };

  const counters = createCounters();
  // Lifecycle lines are rate-limited per kind: a flood of forged registrations must not turn
  // into a flood of log lines.
  const logs = new LogLimiter(logger);
  const logAddresses = logger.isLevelEnabled('debug');
  // Members of open legacy sessions, for the metrics: joins minus leaves minus the members of
  // sessions that ended (the v2 table reports no joins).
  let legacyMembers = 0;
  const onLifecycle = (event: SessionLifecycleEvent): void => {
    if (event.protocol === 'legacy' && event.type !== 'created') legacyMembers -= event.members;
    if (!logs.enabled) return;
    logs.info(
      {
        protocol: event.protocol,
        key: event.key,
        maxPlayers: event.maxPlayers,
        members: event.members,
        reason: event.reason,
      },
      `session ${event.type}`,
    );
  };
  const onMember = (event: MemberLifecycleEvent): void => {
    if (event.protocol === 'legacy') {
      if (event.type === 'joined') legacyMembers++;
      else if (event.type === 'left') legacyMembers--;
    }
    if (!logs.enabled) return;
    const fields: Record<string, unknown> = {
      protocol: event.protocol,
      key: event.key,
      name: event.name,
      reason: event.reason,
    };
    if (logAddresses) {
      fields.address = event.address;
      fields.port = event.port;
    }
    logs.info(fields, `member ${event.type}`);
  };
  const core = new RendezvousServer({
    ...settings,
    randomBytes: (bytes) => randomBytes(bytes),
    counters,
  });

  let metrics: MetricsServer | undefined;
  if (options.metricsPort !== undefined) {
    try {
      // Loaded only when asked for: a server without metrics never loads prom-client.
      const { createMetricsRegistry, startMetricsServer } = await import('./metrics.js');
      const registry = createMetricsRegistry({
        counters,
        core,
        legacyMembers: () => legacyMembers,
      });
      metrics = await startMetricsServer(
        options.metricsHost ?? DEFAULT_METRICS_HOST,
        options.metricsPort,
        registry,
      );
    } catch (error) {
      socket.close();
      for (const probe of probeSockets.values()) probe.close();
      throw error;
    }
  }

  const traceDatagrams = logger.isLevelEnabled('trace');
  const sockets = new Map<SocketId, dgram.Socket>([[MAIN_SOCKET, socket], ...probeSockets]);
  // Relay ports are opened by the driver at the core's `bind`, on the main socket's address
  // and family.
  const driver = new UdpDriver<ServerEvent>({
    core,
    sockets,
    onEvent: (event) => (isMemberEvent(event) ? onMember(event) : onLifecycle(event)),
    // A send that fails (Node throws at once for port 0 or a bad address) fails alone: the
    // core goes on with the next member, session and timer.
    onSendError: () => countRejection(counters, 'send_failed'),
    onSocketError: (error, id) => {
      if (id >= MIN_RELAY_PORT) logger.warn({ err: error, relayPort: id }, 'relay socket error');
      else if (id === MAIN_SOCKET) logger.warn({ err: error }, 'socket error');
      else logger.warn({ err: error, via: id }, 'socket error');
    },
    ...(traceDatagrams
      ? {
          onDatagram: (from: dgram.RemoteInfo, bytes: number, id: SocketId): void => {
            if (id === MAIN_SOCKET) {
              logger.trace({ from: from.address, port: from.port, bytes }, 'datagram');
            }
          },
        }
      : {}),
  });

  const bound = socket.address();
  const family = bound.family === 'IPv6' ? 'IPv6' : 'IPv4';
  logger.info(
    {
      address: bound.address,
      port: bound.port,
      family,
      receiveBufferBytes: socket.getRecvBufferSize(),
      autostart: settings.autostart,
      sessionTtlS: settings.sessionTtlMs / 1000,
      maxSessions: settings.maxSessions,
      maxPlayersCap: settings.maxPlayersCap,
      legacy: settings.legacy,
      relay: settings.relay,
      ...(settings.relay
        ? {
            relayPorts: `${settings.relayPorts.low}-${settings.relayPorts.high}`,
            // No cap (Infinity) is left out: JSON would write it as null.
            relayLimits: Object.fromEntries(
              Object.entries(core.v2.relay?.limits ?? {}).filter(([, v]) => Number.isFinite(v)),
            ),
          }
        : {}),
      logLevel: logger.level,
      ...(settings.altAddress === '' ? {} : { altAddress: settings.altAddress }),
      ...(settings.altPort === 0 ? {} : { altPort: settings.altPort }),
    },
    'listening',
  );
  if (metrics !== undefined) {
    logger.info({ address: metrics.address, port: metrics.port }, 'metrics listening');
  }
  // The relay's refusals and rate drops, one line per interval with the counts by reason: a
  // flood of asks or of game datagrams must not become a line each.
  const relayRefused: Record<string, number> = {};
  const relayDropped: Record<string, number> = {};
  const relayLog = settings.relay
    ? setInterval(() => {
        const refusals = grownCounts(relayRefused, counters.relayRefusals);
        const drops = grownCounts(relayDropped, counters.relayDrops);
        if (refusals === undefined && drops === undefined) return;
        logger.warn(
          {
            ...(refusals === undefined ? {} : { refusals }),
            ...(drops === undefined ? {} : { drops }),
            relayAllocations: core.v2.relay?.size ?? 0,
            intervalS: RELAY_LOG_INTERVAL_MS / 1000,
          },
          'relay limits reached',
        );
      }, RELAY_LOG_INTERVAL_MS)
    : undefined;
  relayLog?.unref();

  let closing: Promise<void> | undefined;
  let drainRun: Promise<void> | undefined;
  const drain = (maxMs: number): Promise<void> => {
    if (closing !== undefined || !(maxMs > 0)) return close();
    drainRun ??= (async () => {
      const startedAt = performance.now();
      metrics?.markStopping();
      // Track sends from now on, so that close() waits for the `closed` pushes to leave.
      driver.trackSends();
      driver.run((now) => core.drain(now, CLOSE_REASONS.serverShutdown));
      logger.info(
        {
          maxSeconds: maxMs / 1000,
          startedSessions: core.v2.startedCount,
          relayAllocations: core.v2.relay?.size ?? 0,
        },
        'draining',
      );
      for (;;) {
        const now = performance.now();
        if (closing !== undefined) return;
        if (core.drained(now, DRAIN_QUIET_MS)) break;
        const left = startedAt + maxMs - now;
        if (left <= 0) break;
        await new Promise((resolve) => setTimeout(resolve, Math.min(DRAIN_POLL_MS, left)));
      }
      logger.info(
        {
          seconds: Math.round((performance.now() - startedAt) / 100) / 10,
          idle: core.drained(performance.now(), DRAIN_QUIET_MS),
          relayAllocations: core.v2.relay?.size ?? 0,
        },
        'drained',
      );
      await close();
    })();
    return drainRun;
  };

  const close = (): Promise<void> => {
    closing ??= (async () => {
      // No more datagrams or timeouts reach the core; what it queues below still goes out.
      driver.stop();
      if (relayLog !== undefined) clearInterval(relayLog);
      metrics?.markStopping();
      const sessions = core.sessionCount;
      driver.trackSends();
      driver.run((now) => core.shutdown(now, CLOSE_REASONS.serverShutdown));
      await driver.sendsSettled(SHUTDOWN_DRAIN_MS);
      await driver.close();
      await metrics?.close();
      logs.flush();
      logger.info({ sessions, counters: core.counters }, 'closed');
    })();
    return closing;
  };

  return {
    address: bound.address,
    port: bound.port,
    family,
    altPort: settings.altPort,
    counters: core.counters,
    core,
    metrics: metrics === undefined ? undefined : { address: metrics.address, port: metrics.port },
    close,
    drain,
  };
}

/**
 * The alternate port asked for: `port` undefined is none; `required`: a taken one is fatal;
 * `impossible`: the default could not be had (PORT 65535 has no PORT+1).
 */
interface AltPortWanted {
  readonly port: number | undefined;
  readonly required: boolean;
  readonly impossible?: boolean;
}

function wantedAltPort(given: number | undefined, mainPort: number): AltPortWanted {
  if (given === 0) return { port: undefined, required: false };
  if (given !== undefined) return { port: given, required: true };
  // The default: beside the main port, or any free one beside an ephemeral main port.
  if (mainPort === 0) return { port: 0, required: false };
  const next = mainPort + DEFAULT_ALT_PORT_OFFSET;
  return next <= 65535
    ? { port: next, required: false }
    : { port: undefined, required: false, impossible: true };
}

/**
 * The NAT diagnosis sockets beside the main one (`ServerSocket` 1-3): on the alternate
 * address, the alternate port, and both. Empty without an alternate address or port. A
 * default alternate port that is taken is logged and left out; an asked-for one fails.
 */
async function bindProbeSockets(
  altAddressSetting: string,
  altPortWanted: AltPortWanted,
  host: string | undefined,
  main: dgram.Socket,
  logger: Logger,
): Promise<Map<ServerSocket, dgram.Socket>> {
  const sockets = new Map<ServerSocket, dgram.Socket>();
  // '' is "none" in the settings; undefined below is "this socket is not wanted".
  const altAddress = altAddressSetting === '' ? undefined : altAddressSetting;
  const mainAddress = main.address().address;
  const mainPort = main.address().port;
  if (altPortWanted.impossible === true) {
    logger.warn(
      { port: mainPort, effect: ALT_PORT_MISSING_EFFECT, fix: 'set --alt-port PORT' },
      ALT_PORT_UNAVAILABLE,
    );
  }
  if (altAddress === undefined && altPortWanted.port === undefined) return sockets;
  if (altAddress !== undefined && (host === undefined || isIP(host) === 0)) {
    throw new HolePunchError(
      'bad_request',
      'an alternate address needs --host with the main IP address: replies must leave from the address they were sent to',
    );
  }
  const open = (address: string, port: number): Promise<dgram.Socket> =>
    bindTo(
      dgram.createSocket({ type: isIP(address) === 6 ? 'udp6' : 'udp4', ipv6Only: false }),
      port,
      address,
    );
  try {
    let altPort: number | undefined;
    if (altPortWanted.port !== undefined) {
      try {
        const s = await open(mainAddress, altPortWanted.port);
        sockets.set(ALT_PORT_BIT as ServerSocket, s);
        altPort = s.address().port;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (altPortWanted.required) {
          throw new HolePunchError(
            'socket_error',
            `cannot bind the alternate port ${altPortWanted.port} (--alt-port): ${code ?? (error as Error).message}`,
          );
        }
        // The default beside PORT is taken: serve without it rather than not at all, and say so.
        logger.warn(
          {
            altPort: altPortWanted.port,
            code,
            effect: ALT_PORT_MISSING_EFFECT,
            fix: 'free that UDP port, or set --alt-port PORT (or --no-alt-port)',
          },
          ALT_PORT_UNAVAILABLE,
        );
      }
    }
    if (altAddress !== undefined) {
      sockets.set(ALT_ADDRESS_BIT as ServerSocket, await open(altAddress, mainPort));
      if (altPort !== undefined) {
        sockets.set(
          (ALT_ADDRESS_BIT | ALT_PORT_BIT) as ServerSocket,
          await open(altAddress, altPort),
        );
      }
    }
  } catch (error) {
    for (const s of sockets.values()) s.close();
    throw error;
  }
  return sockets;
}

async function bindSocket(host: string | undefined, port: number): Promise<dgram.Socket> {
  if (host === undefined) {
    try {
      return await bindTo(dgram.createSocket({ type: 'udp6', ipv6Only: false }), port, '::');
    } catch (error) {
      // A taken port is taken on IPv4 too; anything else means no usable IPv6 here.
      if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') throw error;
      return await bindTo(dgram.createSocket('udp4'), port, '0.0.0.0');
    }
  }
  const address = isIP(host) === 0 ? (await lookup(host)).address : host;
  const type = isIP(address) === 6 ? 'udp6' : 'udp4';
  // `--host ::` means every interface, IPv4 included.
  return await bindTo(dgram.createSocket({ type, ipv6Only: false }), port, address);
}

function bindTo(socket: dgram.Socket, port: number, address: string): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => {
      try {
        socket.close();
      } catch {
        // Already closed by the failed bind.
      }
      reject(error);
    };
    socket.once('error', onError);
    socket.bind({ port, address, exclusive: true }, () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}
