import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { describe, it } from 'node:test';
import { portFromLine } from '../src/bench/child.js';
import { encodeEchoRequest } from '../src/bench/echo-plan.js';
import { runClosedLoop } from '../src/bench/lobby-load.js';
import { echoLobbySteps, type LobbySpec, serverLobbySteps } from '../src/bench/lobby-script.js';
import { summariseProfile } from '../src/bench/profile.js';
import { quantile } from '../src/bench/report.js';
import { drain } from '../src/core/index.js';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { RendezvousServer } from '../src/server/rendezvous.js';

/** Runs a lobby script through the real server core and returns what each member received. */
function playThroughCore(spec: LobbySpec): { received: string[][]; expected: string[][] } {
  const byPort = new Map<number, number>(spec.ports.map((port, member) => [port, member]));
  const received: string[][] = spec.ports.map(() => []);
  const expected: string[][] = spec.ports.map(() => []);
  const server = new RendezvousServer({ autostart: true });
  const deliver = (to: Endpoint, data: Uint8Array): void => {
    received[byPort.get(to.port) as number]?.push(Buffer.from(data).toString('latin1'));
  };
  for (const step of serverLobbySteps(spec)) {
    server.handle(
      0,
      { address: spec.address, port: spec.ports[step.from] as number },
      step.request,
    );
    for (const work of drain(server)) if (work.type === 'send') deliver(work.to, work.data);
    step.expect.forEach((queue, member) => {
      for (const reply of queue) expected[member]?.push(String(reply));
    });
  }
  return { received, expected };
}

describe('the load generator expects exactly what the server sends', () => {
  for (const players of [2, 8]) {
    it(`a ${players}-player lobby run through the real server core yields byte for byte the replies the load generator verifies`, () => {
      const spec: LobbySpec = {
        id: 123_456,
        players,
        maxPlayers: players,
        address: '127.0.0.1',
        ports: Array.from({ length: players }, (_, i) => 40_000 + i),
      };
      const { received, expected } = playThroughCore(spec);
      assert.deepEqual(received, expected);
      assert.ok(received.every((queue) => queue.at(-1)?.startsWith('peers:')));
    });
  }

  it('an idle session (MAX above its 2 members) gets no peers: and stays open', () => {
    const spec: LobbySpec = {
      id: 7,
      players: 2,
      maxPlayers: 4,
      address: '127.0.0.1',
      ports: [1, 2],
    };
    const { received, expected } = playThroughCore(spec);
    assert.deepEqual(received, expected);
    assert.ok(received.flat().every((reply) => !reply.startsWith('peers:')));
  });
});

describe('the load generator counts only verified replies', () => {
  it('a server that answers every request with a wrong ok: gets no lobby and no reply counted', async () => {
    const liar = dgram.createSocket('udp4');
    liar.on('message', (_msg, rinfo) => liar.send('ok:1', rinfo.port, rinfo.address));
    await new Promise<void>((resolve) => liar.bind(0, '127.0.0.1', () => resolve()));
    try {
      const result = await runClosedLoop({
        target: { mode: 'server', address: '127.0.0.1', port: liar.address().port },
        players: 2,
        concurrency: 4,
        warmupMs: 50,
        measureMs: 300,
        firstLobbyId: 1,
      });
      assert.equal(result.lobbiesCompleted, 0);
      assert.equal(result.repliesVerified, 0);
      assert.ok(result.verifyFailures > 0, 'the wrong replies were seen and refused');
      assert.equal(result.latenciesMs.length, 0);
    } finally {
      await new Promise<void>((resolve) => liar.close(() => resolve()));
    }
  });
});

describe('the echo reference does the same datagram I/O as the server', () => {
  it('each echo request keeps the real request length and asks for replies of the server replies sizes', () => {
    const spec: LobbySpec = {
      id: 99,
      players: 2,
      maxPlayers: 2,
      address: '127.0.0.1',
      ports: [50_001, 50_002],
    };
    const server = serverLobbySteps(spec);
    const echo = echoLobbySteps(spec);
    assert.equal(echo.length, server.length);
    echo.forEach((step, i) => {
      const real = server[i];
      assert.ok(real !== undefined);
      assert.equal(step.replies, real.replies);
      assert.equal(step.request.length, Math.max(real.request.length, 1 + 2 * real.replies));
      const sizes = real.expect.flat().map((reply) => String(reply).length);
      const asked = Array.from({ length: step.request[0] as number }, (_, r) =>
        step.request.readUInt16BE(1 + 2 * r),
      );
      assert.deepEqual(asked, sizes);
    });
  });

  it('refuses a plan the one-byte count cannot carry instead of truncating it', () => {
    assert.throws(
      () => encodeEchoRequest(Buffer.from('rc:a:b:c'), new Array(256).fill(8)),
      RangeError,
    );
  });
});

describe('small parts of the report', () => {
  it('quantile picks the nearest-rank value and NaN for no samples', () => {
    const sorted = Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal(quantile(sorted, 0.5), 5);
    assert.equal(quantile(sorted, 0.99), 10);
    assert.equal(quantile(sorted, 0), 1);
    assert.ok(Number.isNaN(quantile(new Float64Array(0), 0.5)));
  });

  it('finds the listening port in a pino line, a nested address, and ignores other lines', () => {
    assert.equal(portFromLine('{"level":30,"port":4321,"msg":"listening"}'), 4321);
    assert.equal(portFromLine('{"event":"listening","address":{"port":55}}'), 55);
    assert.equal(portFromLine('listening on 4000'), undefined);
    assert.equal(portFromLine('{"port":"4000"}'), undefined);
    assert.equal(portFromLine('{broken'), undefined);
  });

  it('a profile summary ranks functions by self time and leaves out idle', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'bench-prof-test-'));
    try {
      const file = join(dir, 'a.cpuprofile');
      const frame = (functionName: string) => ({ functionName, url: '', lineNumber: 0 });
      writeFileSync(
        file,
        JSON.stringify({
          nodes: [
            { id: 1, callFrame: frame('(idle)') },
            { id: 2, callFrame: frame('hot') },
            { id: 3, callFrame: frame('cold') },
          ],
          samples: [2, 2, 2, 3, 1, 1],
          timeDeltas: [0, 1000, 1000, 1000, 1000, 5000],
        }),
      );
      const summary = summariseProfile(file, 5);
      assert.deepEqual(
        summary.top.map((e) => e.function),
        ['hot', 'cold'],
      );
      assert.equal(summary.top[0]?.selfPercent, 75);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
