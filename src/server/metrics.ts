// Prometheus metrics and a health check over HTTP, only when the operator asks for them
// (`--metrics-port`). Every value is read from the core when scraped: nothing is added to the
// per-datagram path beyond the plain counters the core keeps anyway.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { ServerCounters } from './counters.js';
import type { RendezvousServer } from './rendezvous.js';

/** What the metrics read, at scrape time. */
export interface MetricsSource {
  readonly counters: ServerCounters;
  readonly core: RendezvousServer;
  /** Members of open legacy sessions (the shell tallies them from member and session events). */
  legacyMembers(): number;
}

/** A registry of the server's metrics (and Node's process metrics), fresh per server. */
export function createMetricsRegistry(source: MetricsSource): Registry {
  const registry = new Registry();
  const { counters, core } = source;
  const registers = [registry];

  new Gauge({
    name: 'holepunch_sessions_open',
    help: 'Sessions open now (waiting for players: created and not yet ended), by protocol',
    labelNames: ['protocol'],
    registers,
    collect() {
      this.set({ protocol: 'legacy' }, core.legacy.sessionCount);
      // Started v2 sessions lingering for acks already ended (`started`): not open.
      this.set({ protocol: 'v2' }, core.v2.waitingCount);
    },
  });
  new Gauge({
    name: 'holepunch_members',
    help: 'Members of open sessions, by protocol (v2: unvalidated ones and started sessions lingering for acks included)',
    labelNames: ['protocol'],
    registers,
    collect() {
      this.set({ protocol: 'legacy' }, source.legacyMembers());
      this.set({ protocol: 'v2' }, core.v2.memberCount);
    },
  });
  // Both read counts the v2 table keeps as sessions change: O(1) per scrape at any size.
  new Gauge({
    name: 'holepunch_v2_sessions',
    help: 'v2 sessions in the table, by state: waiting (lobby) or started (lingering for acks and late relay requests, at most 15 s)',
    labelNames: ['state'],
    registers,
    collect() {
      this.set({ state: 'waiting' }, core.v2.waitingCount);
      this.set({ state: 'started' }, core.v2.startedCount);
    },
  });
  new Gauge({
    name: 'holepunch_relay_allocations',
    help: 'Relay allocations open now (one UDP relay port each; 0 when the server does not relay)',
    registers,
    collect() {
      this.set(core.v2.relay?.size ?? 0);
    },
  });

  const total = (name: string, help: string, read: () => number): void => {
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  };
  total('holepunch_datagrams_received_total', 'UDP datagrams received, valid or not', () => {
    return counters.datagramsIn;
  });
  total('holepunch_datagrams_sent_total', 'UDP datagrams sent, relayed ones included', () => {
    return counters.datagramsOut;
  });
  total('holepunch_bytes_received_total', 'UDP payload bytes received', () => counters.bytesIn);
  total('holepunch_bytes_sent_total', 'UDP payload bytes sent', () => counters.bytesOut);
  total(
    'holepunch_datagrams_relayed_total',
    'Game datagrams the relay forwarded between two members (also counted as received and sent)',
    () => counters.datagramsRelayed,
  );
  total(
    'holepunch_relay_bytes_total',
    'UDP payload bytes the relay forwarded (also counted in bytes received and sent)',
    () => counters.relayBytes,
  );
  total('holepunch_sessions_created_total', 'Sessions created, both protocols', () => {
    return counters.sessionsCreated;
  });
  new Counter({
    name: 'holepunch_sessions_ended_total',
    help: 'Sessions ended, each once, by how: started (peers sent), expired (TTL), closed (host, host left or silent, drain or shutdown)',
    labelNames: ['how'],
    registers,
    collect() {
      this.reset();
      this.inc({ how: 'started' }, counters.sessionsStarted);
      this.inc({ how: 'expired' }, counters.sessionsExpired);
      this.inc({ how: 'closed' }, counters.sessionsClosed);
    },
  });
  new Counter({
    name: 'holepunch_relay_refusals_total',
    help: 'New relay allocations refused (relay_unavailable), by reason: full (every port in use), source_full (the source holds its share of the ports), session_full (the session holds a full lobby of pairs), no_port',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const reason of ['full', 'source_full', 'session_full', 'no_port']) {
        this.inc({ reason }, counters.relayRefusals[reason] ?? 0);
      }
    },
  });
  new Counter({
    name: 'holepunch_relay_drops_total',
    help: 'Game datagrams the relay dropped over a rate cap, by reason: pair_rate (--relay-pair-packets/--relay-pair-bytes), server_rate (--relay-total-packets/--relay-total-bytes)',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const reason of ['pair_rate', 'server_rate']) {
        this.inc({ reason }, counters.relayDrops[reason] ?? 0);
      }
    },
  });
  new Counter({
    name: 'holepunch_rejections_total',
    help: 'Datagrams refused or dropped, by kind (see docs/server.md#refusals)',
    labelNames: ['kind'],
    registers,
    collect() {
      this.reset();
      for (const [kind, count] of Object.entries(counters.rejections)) this.inc({ kind }, count);
    },
  });
  collectDefaultMetrics({ register: registry });
  return registry;
}

export interface MetricsServer {
  readonly address: string;
  readonly port: number;
  /** From now on `/healthz` answers 503 (the server is shutting down). */
  markStopping(): void;
  close(): Promise<void>;
}

/** Serves `GET /metrics` (Prometheus text format) and `GET /healthz` on host:port. */
export async function startMetricsServer(
  host: string,
  port: number,
  registry: Registry,
): Promise<MetricsServer> {
  let stopping = false;
  const server = http.createServer((request, response) => {
    const path = (request.url ?? '/').split('?', 1)[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
      response.end('method not allowed\n');
      return;
    }
    if (path === '/healthz') {
      response.writeHead(stopping ? 503 : 200, { 'content-type': 'text/plain' });
      response.end(stopping ? 'shutting down\n' : 'ok\n');
      return;
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => {
          response.writeHead(200, { 'content-type': registry.contentType });
          response.end(text);
        },
        (error: unknown) => {
          response.writeHead(500, { 'content-type': 'text/plain' });
          response.end(`${(error as Error).message}\n`);
        },
      );
      return;
    }
    response.writeHead(404, { 'content-type': 'text/plain' });
    response.end('not found: try /metrics or /healthz\n');
  });
  // A scraper that stalls must not hold a socket for long.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  return {
    address: bound.address,
    port: bound.port,
    markStopping() {
      stopping = true;
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
