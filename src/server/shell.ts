import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { type Logger, pino } from 'pino';
import { HolePunchError } from '../errors.js';
import type { Endpoint } from '../protocol/endpoint.js';
import { CLOSE_REASONS, DEFAULT_MAX_PLAYERS_CAP } from '../protocol/legacy.js';
import { countRejection, createCounters, type ServerCounters } from './counters.js';
import type { Outbox } from './handler.js';
import { DEFAULT_MAX_SESSIONS, SESSION_TTL_MS } from './legacy-sessions.js';
import type { MemberLifecycleEvent, SessionLifecycleEvent } from './lifecycle.js';
import { LogLimiter } from './log-limit.js';
import type { MetricsServer } from './metrics.js';
import { ALT_ADDRESS_BIT, ALT_PORT_BIT, type ServerSocket } from './probe.js';
import { RendezvousServer } from './rendezvous.js';
import type { SourceLimitSettings } from './source-limits.js';
import {
  DEFAULT_RELAY_PORTS,
  type RelayIo,
  type RelayLimits,
  type RelayPortRange,
} from './v2-relay.js';

/** The original's port, and the CLI's default. */
export const DEFAULT_PORT = 4000;

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

// setTimeout clamps longer delays to 1 ms; wake up early instead and re-arm.
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

export interface StartServerOptions {
  /** UDP port; 0 picks a free one (read it back from `RunningServer.port`). Default 4000. */
  readonly port?: number;
  /**
   * Bind address (IP literal or resolvable name). Default: every interface, IPv4 and IPv6
   * (`::` dual-stack), or `0.0.0.0` where the machine has no IPv6.
   */
  readonly host?: string;
  /** Legacy AUTOSTART (`y`): `peers:` as soon as a session is full. Default true. */
  readonly autostart?: boolean;
  readonly sessionTtlMs?: number;
  readonly maxSessions?: number;
  readonly maxPlayersCap?: number;
  /** Quotas per source address; see `RendezvousServerOptions.sourceLimits`. */
  readonly sourceLimits?: SourceLimitSettings;
  /** Bytes of session state; see `RendezvousServerOptions.memoryBudgetBytes`. */
  readonly memoryBudgetBytes?: number;
  /** Serve the legacy text protocol beside v2 (default true); see `RendezvousServerOptions`. */
  readonly legacy?: boolean;
  /** Relay v2 members without a direct path (default true; `--no-relay` turns it off). */
  readonly relay?: boolean;
  /**
   * UDP ports the relay binds on the server's address, one per relayed pair, bound when a
   * pair asks and released when it closes (`--relay-ports LOW-HIGH`). Default
   * `DEFAULT_RELAY_PORTS` (40000-40999). Open them in the firewall (docs/server.md).
   */
  readonly relayPorts?: RelayPortRange;
  /** Caps of the relay (per allocation, per source, in total); defaults in v2-relay.ts. */
  readonly relayLimits?: Partial<RelayLimits>;
  /** pino logger for the startup line and lifecycle events. Default: silent. */
  readonly logger?: Logger;
  /**
   * Serve Prometheus `/metrics` and `/healthz` over HTTP on this TCP port (0 = a free one).
   * Default: no HTTP listener at all.
   */
  readonly metricsPort?: number;
  /** Bind address of the metrics listener. Default `127.0.0.1` (not public). */
  readonly metricsHost?: string;
  /**
   * NAT diagnosis (`holepunch-client doctor`): a second address of this machine, and/or a
   * second port, from which the server answers probes that ask for it, so clients can run
   * every RFC 5780 test. `altAddress` needs `host` (replies must leave from the address they
   * were sent to). Only probes are served there.
   */
  readonly altAddress?: string;
  readonly altPort?: number;
}

export interface RunningServer {
  /** The bound address (`::`, `0.0.0.0` or the `host` given). */
  readonly address: string;
  /** The bound port (the actual one when 0 was asked for). */
  readonly port: number;
  readonly family: 'IPv4' | 'IPv6';
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

/** Binds the rendezvous server to a UDP socket and starts serving. */
export async function startServer(options: StartServerOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? pino({ enabled: false });
  const port = options.port ?? DEFAULT_PORT;
  const autostart = options.autostart ?? true;
  const sessionTtlMs = options.sessionTtlMs ?? SESSION_TTL_MS;
  const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
  const maxPlayersCap = options.maxPlayersCap ?? DEFAULT_MAX_PLAYERS_CAP;
  const legacy = options.legacy ?? true;
  const relay = options.relay ?? true;

  const socket = await bindSocket(options.host, port);
  try {
    socket.setRecvBufferSize(RECEIVE_BUFFER_BYTES);
  } catch {
    // Not permitted or not supported: the kernel default still works, with more drops.
  }
  let probeSockets: Map<ServerSocket, dgram.Socket>;
  try {
    probeSockets = await bindProbeSockets(options, socket);
  } catch (error) {
    socket.close();
    throw error;
  }

  let draining = false;
  let pendingSends = 0;
  let onDrained: (() => void) | undefined;
  const afterDrainSend = (): void => {
    pendingSends--;
    if (pendingSends === 0) onDrained?.();
  };
  const counters = createCounters();
  const outbox: Outbox = {
    send(to: Endpoint, data: Uint8Array, via?: number): void {
      const from =
        (via === undefined ? undefined : probeSockets.get(via as ServerSocket)) ?? socket;
      // A send that fails (Node throws at once for port 0 or a bad address) fails alone: the
      // core goes on with the next member, session and timer.
      try {
        if (draining) {
          pendingSends++;
          from.send(data, to.port, to.address, afterDrainSend);
        } else {
          from.send(data, to.port, to.address);
        }
      } catch {
        if (draining) pendingSends--;
        countRejection(counters, 'send_failed');
      }
    },
  };

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
  // The relay's sockets, one per relayed pair, bound on demand beside the main socket.
  const relaySockets = new Map<number, dgram.Socket>();
  const relayPorts = options.relayPorts ?? DEFAULT_RELAY_PORTS;
  const relayIo: RelayIo = {
    open(relayPort: number): void {
      const local = socket.address();
      const relaySocket = dgram.createSocket(
        local.family === 'IPv6' ? { type: 'udp6', ipv6Only: false } : { type: 'udp4' },
      );
      relaySockets.set(relayPort, relaySocket);
      let listening = false;
      relaySocket.on('error', (error) => {
        if (listening) {
          logger.warn({ err: error, relayPort }, 'relay socket error');
          return;
        }
        // Taken by another program (or not ours to bind): the core moves to another port.
        if (relaySockets.get(relayPort) === relaySocket) relaySockets.delete(relayPort);
        try {
          relaySocket.close();
        } catch {}
        core.relayPortResult(performance.now(), relayPort, false);
        armTimer();
      });
      relaySocket.on('message', (data: Buffer, rinfo: dgram.RemoteInfo) => {
        if (closing !== undefined) return;
        core.handleRelay(performance.now(), relayPort, rinfo, data);
        armTimer();
      });
      relaySocket.bind({ port: relayPort, address: local.address, exclusive: true }, () => {
        listening = true;
        core.relayPortResult(performance.now(), relayPort, true);
        armTimer();
      });
    },
    close(relayPort: number): void {
      const relaySocket = relaySockets.get(relayPort);
      relaySockets.delete(relayPort);
      try {
        relaySocket?.close();
      } catch {}
    },
    send(relayPort: number, to: Endpoint, data: Uint8Array): void {
      try {
        relaySockets.get(relayPort)?.send(data, to.port, to.address);
      } catch {
        countRejection(counters, 'send_failed');
      }
    },
  };
  const core = new RendezvousServer({
    outbox,
    relayIo,
    relayPorts,
    ...(options.relayLimits === undefined ? {} : { relayLimits: options.relayLimits }),
    autostart,
    sessionTtlMs,
    maxSessions,
    maxPlayersCap,
    legacy,
    relay,
    ...(options.sourceLimits === undefined ? {} : { sourceLimits: options.sourceLimits }),
    ...(options.memoryBudgetBytes === undefined
      ? {}
      : { memoryBudgetBytes: options.memoryBudgetBytes }),
    randomBytes: (bytes) => randomBytes(bytes),
    onLifecycle,
    onMember,
    counters,
    altAddress: options.altAddress ?? '',
    altPort: options.altPort ?? 0,
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

  let timer: NodeJS.Timeout | undefined;
  let armedDeadline = Number.POSITIVE_INFINITY;
  // One timer for every session: re-armed only when the core's next deadline moves earlier.
  const armTimer = (): void => {
    const next = core.nextDeadline();
    if (next >= armedDeadline) return;
    if (timer !== undefined) clearTimeout(timer);
    armedDeadline = next;
    const delay = Math.min(Math.max(0, Math.ceil(next - performance.now())), MAX_TIMER_DELAY_MS);
    timer = setTimeout(onTimer, delay);
    timer.unref();
  };
  const onTimer = (): void => {
    timer = undefined;
    armedDeadline = Number.POSITIVE_INFINITY;
    core.handleTimeout(performance.now());
    armTimer();
  };

  let closing: Promise<void> | undefined;
  const traceDatagrams = logger.isLevelEnabled('trace');
  socket.on('message', (data: Buffer, rinfo: dgram.RemoteInfo) => {
    if (closing !== undefined) return;
    if (traceDatagrams) {
      logger.trace({ from: rinfo.address, port: rinfo.port, bytes: data.length }, 'datagram');
    }
    core.handle(performance.now(), rinfo, data);
    armTimer();
  });
  socket.on('error', (error) => {
    logger.warn({ err: error }, 'socket error');
  });
  for (const [via, probe] of probeSockets) {
    probe.on('message', (data: Buffer, rinfo: dgram.RemoteInfo) => {
      if (closing === undefined) core.handle(performance.now(), rinfo, data, via);
    });
    probe.on('error', (error) => logger.warn({ err: error, via }, 'socket error'));
  }

  const bound = socket.address();
  const family = bound.family === 'IPv6' ? 'IPv6' : 'IPv4';
  logger.info(
    {
      address: bound.address,
      port: bound.port,
      family,
      receiveBufferBytes: socket.getRecvBufferSize(),
      autostart,
      sessionTtlS: sessionTtlMs / 1000,
      maxSessions,
      maxPlayersCap,
      legacy,
      relay,
      ...(relay ? { relayPorts: `${relayPorts.low}-${relayPorts.high}` } : {}),
      logLevel: logger.level,
      ...(options.altAddress === undefined ? {} : { altAddress: options.altAddress }),
      ...(options.altPort === undefined ? {} : { altPort: options.altPort }),
    },
    'listening',
  );
  if (metrics !== undefined) {
    logger.info({ address: metrics.address, port: metrics.port }, 'metrics listening');
  }

  let drainRun: Promise<void> | undefined;
  const drain = (maxMs: number): Promise<void> => {
    if (closing !== undefined || !(maxMs > 0)) return close();
    drainRun ??= (async () => {
      const startedAt = performance.now();
      metrics?.markStopping();
      // Track sends from now on, so that close() waits for the `closed` pushes to leave.
      draining = true;
      core.drain(startedAt, CLOSE_REASONS.serverShutdown);
      armTimer();
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
      if (timer !== undefined) clearTimeout(timer);
      metrics?.markStopping();
      const sessions = core.sessionCount;
      draining = true;
      core.shutdown(performance.now(), CLOSE_REASONS.serverShutdown);
      if (pendingSends > 0) {
        await new Promise<void>((resolve) => {
          const giveUp = setTimeout(resolve, SHUTDOWN_DRAIN_MS);
          onDrained = () => {
            clearTimeout(giveUp);
            resolve();
          };
        });
      }
      await new Promise<void>((resolve) => socket.close(() => resolve()));
      for (const relaySocket of relaySockets.values()) relaySocket.close();
      relaySockets.clear();
      for (const probe of probeSockets.values()) probe.close();
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
    counters: core.counters,
    core,
    metrics: metrics === undefined ? undefined : { address: metrics.address, port: metrics.port },
    close,
    drain,
  };
}

/**
 * The NAT diagnosis sockets beside the main one (`ServerSocket` 1-3): on the alternate
 * address, the alternate port, and both. Empty without `altAddress`/`altPort`.
 */
async function bindProbeSockets(
  options: StartServerOptions,
  main: dgram.Socket,
): Promise<Map<ServerSocket, dgram.Socket>> {
  const sockets = new Map<ServerSocket, dgram.Socket>();
  const { altAddress, altPort } = options;
  if (altAddress === undefined && altPort === undefined) return sockets;
  if (altAddress !== undefined && (options.host === undefined || isIP(options.host) === 0)) {
    throw new HolePunchError(
      'bad_request',
      'an alternate address needs --host with the main IP address: replies must leave from the address they were sent to',
    );
  }
  const mainAddress = main.address().address;
  const mainPort = main.address().port;
  const wanted: [ServerSocket, string | undefined, number | undefined][] = [
    [ALT_ADDRESS_BIT, altAddress, mainPort],
    [ALT_PORT_BIT, mainAddress, altPort],
    [(ALT_ADDRESS_BIT | ALT_PORT_BIT) as ServerSocket, altAddress, altPort],
  ];
  try {
    for (const [via, address, port] of wanted) {
      if (address === undefined || port === undefined) continue;
      const type = isIP(address) === 6 ? 'udp6' : 'udp4';
      sockets.set(via, await bindTo(dgram.createSocket({ type, ipv6Only: false }), port, address));
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
