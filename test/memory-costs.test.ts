import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

/**
 * The memory budget is only a bound if what it charges (`MEMORY_COSTS`) covers what the state
 * really takes. A child process with `--expose-gc` fills the server core with sessions whose
 * fields are all at their largest and compares the heap and buffer bytes they hold with the
 * budget they were charged. v2 lobbies are measured started (every member's `peers` entry
 * made) and the legacy ones full.
 */

const url = (path: string) => new URL(path, import.meta.url).href;

const MEASURE = `
const { RendezvousServer } = await import(${JSON.stringify(url('../src/server/rendezvous.js'))});
const { drain } = await import(${JSON.stringify(url('../src/core/index.js'))});
const { decodeV2, encodeV2, padRegisterRequest } = await import(${JSON.stringify(url('../src/protocol/v2.js'))});
const { UNLIMITED_SOURCES } = await import(${JSON.stringify(url('../src/server/source-limits.js'))});
const protocol = process.argv[1];
const server = new RendezvousServer({ sourceLimits: UNLIMITED_SOURCES, memoryBudgetBytes: 1e9 });
const text = (n, seed) => (seed + 'x'.repeat(n)).slice(0, n);
const v6 = (i) => '2001:0db8:0000:0000:0000:0000:' + (i >> 16).toString(16).padStart(4, '0') + ':' + (i & 0xffff).toString(16).padStart(4, '0');
const candidates = [0, 1, 2, 3].map((k) => ({ address: '2001:0db8:0000:0000:0000:0000:0000:000' + k, port: 1000 + k }));
let replies = 0;
const pump = (now, from, data) => {
  server.handle(now, from, data);
  const out = [];
  for (const w of drain(server)) if (w.type === 'send') { replies++; out.push(w.data); }
  return out;
};
const sample = () => { globalThis.gc(); globalThis.gc(); const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };
const before = sample();
let n = 0;
if (protocol === 'v2') {
  for (let s = 0; s < 150; s++) {
    const session = text(32, 's' + s + '-');
    for (let slot = 0; slot < 32; slot++) {
      const from = { address: v6(n++), port: 40000 };
      const base = { requestId: 1, session, name: text(32, 'm' + slot + '-'), nickname: text(32, 'N'), candidates };
      const msg = slot === 0 ? { type: 'host', maxPlayers: 32, ...base } : { type: 'join', ...base };
      const reply = decodeV2(pump(0, from, padRegisterRequest(encodeV2(msg)))[0]);
      if (!reply.ok || reply.msg.type !== 'registered') throw new Error('not registered: ' + JSON.stringify(reply));
      pump(1, from, encodeV2({ type: 'keepalive', requestId: 2, session, token: reply.msg.token, lobbyVersion: 0 }));
    }
  }
  if (server.v2.startedCount !== 150) throw new Error('lobbies did not start: ' + server.v2.startedCount);
} else {
  for (let s = 0; s < 1000; s++) {
    const key = text(32, 'k' + s + '-');
    pump(0, { address: '10.1.' + (s >> 8) + '.' + (s & 255), port: 40000 }, new TextEncoder().encode('rs:' + key + ':16'));
    for (let slot = 1; slot < 16; slot++) {
      const name = text(64, 'p' + s + '-' + slot + '-');
      pump(0, { address: '10.2.' + (n >> 8 & 255) + '.' + (n++ & 255), port: 40000 }, new TextEncoder().encode('rc:' + name + ':' + key + ':' + text(32, 'N')));
    }
  }
}
const held = sample() - before;
console.log(JSON.stringify({ held, charged: server.limits.budget.used, members: n, replies }));
`;

async function measure(protocol: 'v2' | 'legacy') {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--expose-gc', '--input-type=module', '-e', MEASURE, protocol],
    { timeout: 60_000 },
  );
  return JSON.parse(stdout) as { held: number; charged: number; members: number; replies: number };
}

describe('MEMORY_COSTS cover what session state takes (--expose-gc)', () => {
  for (const protocol of ['v2', 'legacy'] as const) {
    it(`${protocol}: sessions with every field at its largest are charged at least what they hold`, async (t) => {
      const m = await measure(protocol);
      t.diagnostic(
        `${protocol}: ${m.members} members hold ${m.held} B, charged ${m.charged} B (${(m.held / m.charged).toFixed(2)})`,
      );
      assert.ok(m.replies > m.members, 'the server answered');
      assert.ok(m.held > 0.3 * m.charged, `a measurement that saw the state: ${JSON.stringify(m)}`);
      assert.ok(m.held <= m.charged, JSON.stringify(m));
    });
  }
});
