import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import type { DoctorJson } from '../src/cli/doctor.js';
import { CLIENT_CLI_PATH, SERVER_CLI_PATH } from '../src/cli/index.js';
import { DIAGNOSIS_SOCKETS, NatDiagnosis, type NatReport } from '../src/doctor/index.js';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { encodeHairpinProbe, isHairpinProbe } from '../src/protocol/hairpin.js';
import { decodeV2, encodeV2 } from '../src/protocol/v2.js';
import { createCounters } from '../src/server/counters.js';
import { ProbeResponder, type ServerSocket } from '../src/server/probe.js';
import { type RunningServer, startServer } from '../src/server/shell.js';
import { SimNat } from '../src/sim/nat.js';
import { seededRandom } from '../src/sim/random.js';

const CLI = CLIENT_CLI_PATH;
const SERVER_CLI = SERVER_CLI_PATH;

const MAIN = '203.0.113.10';
const ALT = '203.0.113.11';
const PORT = 4000;
const ALT_PORT = 4001;
const HOST_LAN = '192.0.2.2';
const NAT_PUBLIC = '198.51.100.10';

/** The server's four sockets, as ServerSocket indices. */
function socketOf(to: Endpoint): ServerSocket | undefined {
  const bits =
    (to.address === ALT ? 1 : to.address === MAIN ? 0 : -1) |
    (to.port === ALT_PORT ? 2 : to.port === PORT ? 0 : -1);
  return bits < 0 ? undefined : (bits as ServerSocket);
}

function endpointOf(
  via: ServerSocket,
  alt: { address: boolean; port: boolean },
): Endpoint | undefined {
  const onAlt = (via & 1) !== 0;
  const onAltPort = (via & 2) !== 0;
  if ((onAlt && !alt.address) || (onAltPort && !alt.port)) return undefined;
  return { address: onAlt ? ALT : MAIN, port: onAltPort ? ALT_PORT : PORT };
}

/**
 * Runs a whole diagnosis in memory: the diagnosis core behind a simulated NAT (or none),
 * the server's probe responder with or without its alternate address and port.
 */
function diagnoseInMemory(
  nat: 'none' | 'full-cone' | 'address-restricted' | 'port-restricted' | 'symmetric',
  alt = { address: true, port: true },
): NatReport {
  const random = seededRandom(7);
  const sim = nat === 'none' ? undefined : new SimNat(nat, NAT_PUBLIC, random);
  const hostAddress = nat === 'none' ? NAT_PUBLIC : HOST_LAN;
  const localPorts = Array.from({ length: DIAGNOSIS_SOCKETS }, (_, i) => 50_000 + i);
  const inFlight: {
    to: Endpoint;
    from: Endpoint;
    data: Uint8Array;
    toServer: boolean;
    via: ServerSocket;
  }[] = [];
  const responder = new ProbeResponder({
    outbox: {
      send(to, data, via) {
        const from = endpointOf((via ?? 0) as ServerSocket, alt);
        if (from !== undefined) inFlight.push({ to, from, data, toServer: false, via: 0 });
      },
    },
    counters: createCounters(),
    altAddress: alt.address ? ALT : '',
    altPort: alt.port ? ALT_PORT : 0,
  });
  const core = new NatDiagnosis({ server: { address: MAIN, port: PORT }, localPorts, random });
  let now = 0;
  const flush = () => {
    for (let guard = 0; guard < 10_000; guard++) {
      for (const t of core.poll()) {
        const internal = { address: hostAddress, port: localPorts[t.socket] as number };
        const from = sim === undefined ? internal : sim.outbound(internal, t.to);
        const via = socketOf(t.to);
        if (via !== undefined) inFlight.push({ to: t.to, from, data: t.data, toServer: true, via });
      }
      const d = inFlight.shift();
      if (d === undefined) return;
      if (d.toServer) {
        if (endpointOf(d.via, alt) === undefined) continue; // no such socket on this server
        const decoded = decodeV2(d.data);
        if (decoded.ok && decoded.msg.type === 'probe')
          responder.handle(d.via, d.from, decoded.msg);
        continue;
      }
      const internal = sim === undefined ? d.to : sim.inbound(d.to.port, d.from);
      if (internal === undefined) continue; // filtered
      const socket = localPorts.indexOf(internal.port);
      core.handle(now, socket, d.from, d.data);
    }
  };
  core.start(now);
  flush();
  for (let i = 0; i < 1_000 && !core.done; i++) {
    now = Math.max(now, core.nextDeadline());
    core.handleTimeout(now);
    flush();
  }
  assert.ok(core.done, 'the diagnosis ends');
  return core.report();
}

describe('NAT diagnosis core against simulated NATs (every RFC 5780 test)', () => {
  const cases = [
    ['none', 'endpoint-independent', 'endpoint-independent', 'preserved'],
    ['full-cone', 'endpoint-independent', 'endpoint-independent', 'preserved'],
    ['address-restricted', 'endpoint-independent', 'address-dependent', 'preserved'],
    ['port-restricted', 'endpoint-independent', 'address-and-port-dependent', 'preserved'],
    ['symmetric', 'address-and-port-dependent', 'address-and-port-dependent', 'random'],
  ] as const;
  for (const [nat, mapping, filtering, ports] of cases) {
    it(`${nat}: mapping ${mapping}, filtering ${filtering}, ports ${ports}`, () => {
      const r = diagnoseInMemory(nat);
      assert.deepEqual(
        { mapping: r.mapping, filtering: r.filtering, ports: r.ports },
        { mapping, filtering, ports },
      );
      assert.deepEqual(r.publicAddresses, [NAT_PUBLIC]);
      assert.deepEqual(r.untested, nat === 'none' || nat === 'full-cone' ? [] : r.untested);
      assert.match(
        r.verdict,
        nat === 'symmetric' ? /you will need the relay/ : /direct connections will work/,
      );
    });
  }

  it('an answer from anywhere but the server socket the test asked for is ignored (a forged reply fakes nothing)', () => {
    const localPorts = Array.from({ length: DIAGNOSIS_SOCKETS }, (_, i) => 50_000 + i);
    const core = new NatDiagnosis({
      server: { address: MAIN, port: PORT },
      localPorts,
      random: seededRandom(3),
    });
    core.start(0);
    const first = core.poll()[0];
    assert.ok(first);
    const decoded = decodeV2(first.data);
    assert.ok(decoded.ok);
    const forged = encodeV2({
      type: 'probe_reply',
      requestId: decoded.msg.requestId,
      observed: { address: '192.0.2.99', port: 1 },
      altAddress: '',
      altPort: 0,
    });
    core.handle(1, first.socket, { address: '192.0.2.66', port: PORT }, forged);
    core.handle(1, first.socket, { address: MAIN, port: ALT_PORT }, forged);
    assert.equal(core.report().reachable, false);
    core.handle(2, first.socket, { address: MAIN, port: PORT }, forged);
    assert.deepEqual(core.report().publicAddresses, ['192.0.2.99']);
  });

  it('the hairpin datagram is hp-hairpin:NONCE and is recognised only with its own nonce', () => {
    const data = encodeHairpinProbe('k3x9');
    assert.equal(new TextDecoder().decode(data), 'hp-hairpin:k3x9');
    assert.equal(isHairpinProbe(data, 'k3x9'), true);
    assert.equal(isHairpinProbe(data, 'k3x8'), false);
    assert.equal(isHairpinProbe(data.subarray(0, -1), 'k3x9'), false);
    assert.equal(isHairpinProbe(encodeHairpinProbe('k3x9 '), 'k3x9'), false);
  });

  it('without an alternate address and port the doctor says which tests it could not run', () => {
    const r = diagnoseInMemory('port-restricted', { address: false, port: false });
    assert.equal(r.mapping, null);
    assert.equal(r.filtering, null);
    assert.ok(r.untested.some((u) => /mapping: .*--alt-address, --alt-port/.test(u)));
    assert.ok(r.untested.some((u) => /filtering: .*--alt-port/.test(u)));
  });

  it('with an alternate port only, mapping and filtering are told apart as far as a port can', () => {
    const r = diagnoseInMemory('symmetric', { address: false, port: true });
    assert.equal(r.mapping, 'address-and-port-dependent');
    assert.equal(r.filtering, 'address-and-port-dependent');
    const cone = diagnoseInMemory('address-restricted', { address: false, port: true });
    assert.equal(cone.mapping, 'endpoint-independent');
    assert.equal(cone.filtering, 'address-dependent');
    assert.ok(cone.untested.some((u) => /look alike without --alt-address/.test(u)));
  });
});

function runCli(args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 20_000 }, (error, stdout) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout });
    });
  });
}

async function freePort(address: string): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, address, () => resolve()));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

describe('holepunch-client doctor over loopback', () => {
  const servers: RunningServer[] = [];
  after(() => Promise.all(servers.map((s) => s.close())));

  it('against a server with --alt-address and --alt-port: every test runs, one JSON object', async () => {
    const server = await startServer({
      port: 0,
      host: '127.0.0.1',
      altAddress: '127.0.0.2',
      altPort: await freePort('127.0.0.1'),
    });
    servers.push(server);
    const { code, stdout } = await runCli([
      'doctor',
      '--server',
      `127.0.0.1:${server.port}`,
      '--json',
    ]);
    assert.equal(code, 0, stdout);
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    const json = JSON.parse(lines[0] as string) as DoctorJson;
    // Loopback has no NAT: the most open behaviour of all.
    assert.equal(json.mapping, 'endpoint-independent');
    assert.equal(json.filtering, 'endpoint-independent');
    assert.equal(json.ports, 'preserved');
    assert.equal(json.hairpin, true);
    assert.deepEqual(json.publicAddresses, ['127.0.0.1']);
    assert.deepEqual(json.untested, []);
    assert.match(json.verdict, /direct connections will work/);
    assert.ok(json.notes.some((n) => /IPv6: not tested/.test(n)));
  });

  it('against a server with --no-alt-port (and no --alt-address): what could not be tested, in words', async () => {
    const server = await startServer({ port: 0, host: '127.0.0.1', altPort: 0 });
    servers.push(server);
    const { code, stdout } = await runCli(['doctor', '--server', `127.0.0.1:${server.port}`]);
    assert.equal(code, 0, stdout);
    assert.match(stdout, /mapping: +not tested/);
    assert.match(stdout, /not tested: mapping: the server has no alternate address or port/);
    assert.match(stdout, /verdict: /);
  });

  it('the server refuses --alt-address without --host, and a bad --alt-port, with usage errors', async () => {
    const usage = (args: string[]) =>
      new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [SERVER_CLI, ...args],
          { timeout: 10_000 },
          (error, _o, stderr) => {
            resolve({ code: (error as { code?: number } | null)?.code ?? 0, stderr });
          },
        );
      });
    const noHost = await usage(['0', '--alt-address', '127.0.0.2']);
    assert.equal(noHost.code, 2);
    assert.match(noHost.stderr, /--alt-address needs --host/);
    const badPort = await usage(['0', '--alt-port', '70000']);
    assert.equal(badPort.code, 2);
    assert.match(badPort.stderr, /--alt-port must be an integer 1-65535/);
  });

  it('a server that does not answer: exit 1 and the verdict says what to check', async () => {
    const { code, stdout } = await runCli([
      'doctor',
      '--server',
      `127.0.0.1:${await freePort('127.0.0.1')}`,
      '--json',
      '--timeout',
      '2000',
    ]);
    assert.equal(code, 1);
    const json = JSON.parse(stdout) as DoctorJson;
    assert.match(json.verdict, /did not answer: check the address/);
  });
});

/** The environment without the caller's HOLEPUNCH_ settings: the server runs on its defaults. */
function defaultsEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('HOLEPUNCH_')),
  );
}

/** How long the README's server may wait for UDP 4000 (another suite may hold it briefly). */
const PORT_4000_WAIT_MS = 30_000;

/**
 * `holepunch-server 4000 y`, the README's first command, as a child process; resolves once it
 * listens. Port 4000 is fixed, as the README has it: while another process holds it, retry.
 */
async function startReadmeServer(): Promise<ChildProcess> {
  const deadline = Date.now() + PORT_4000_WAIT_MS;
  for (;;) {
    const child = spawn(process.execPath, [SERVER_CLI, '4000', 'y'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: defaultsEnv(),
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    const exited = once(child, 'exit');
    const listening = await Promise.race([
      exited.then(() => false),
      (async () => {
        while (!stdout.includes('"msg":"listening"')) {
          if (child.exitCode !== null) return false;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        return true;
      })(),
    ]);
    if (listening) return child;
    if (Date.now() > deadline) throw new Error(`holepunch-server 4000 y did not start: ${stdout}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

describe("holepunch-client doctor against the README's server", () => {
  it('`holepunch-client doctor --server 127.0.0.1:4000 --json` against `holepunch-server 4000 y` (no flag) reports the mapping, the filtering and the ports, none of them untested', async () => {
    const server = await startReadmeServer();
    try {
      const { code, stdout } = await runCli(['doctor', '--server', '127.0.0.1:4000', '--json']);
      assert.equal(code, 0, stdout);
      const json = JSON.parse(stdout) as DoctorJson;
      // Loopback has no NAT: one endpoint for every destination, kept ports.
      assert.equal(json.mapping, 'endpoint-independent');
      assert.notEqual(json.filtering, null);
      assert.equal(json.ports, 'preserved');
      assert.deepEqual(
        json.untested.filter((u) => /no alternate|no answer from/.test(u)),
        [],
        `every test an alternate port makes possible ran: ${JSON.stringify(json.untested)}`,
      );
      assert.match(json.verdict, /direct connections will work/);
    } finally {
      server.kill('SIGTERM');
      await once(server, 'exit');
    }
  });
});
