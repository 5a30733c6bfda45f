import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  CLIENT_CLI_PATH,
  createLab,
  type JsonLine,
  type Lab,
  type LabProcess,
  labNamespaces,
  labUnavailableReasons,
  SERVER_ADDRESS,
} from '../src/natlab/index.js';
import { skipUnless } from './suites.js';

/**
 * Issue 21 point 12 in the NAT lab: a host keeps its session open (`--keep-open`), and a third
 * player behind its own port-restricted NAT joins after the start, is punched to both players
 * and tests with them; its game is then killed (a crash) and started again under its name,
 * and is punched to both once more. Everyone runs the README's client with its defaults.
 */
const KEEP_OPEN_MS = 20_000;
const STEP_WAIT_MS = 15_000;
const PROCESS_LIMIT_MS = 60_000;

const reasons = await labUnavailableReasons();
const skip = skipUnless(reasons, 'NAT lab');

const event = (name: string, peer?: string) => (l: JsonLine) =>
  l.event === name &&
  (peer === undefined ||
    l.peer === peer ||
    (typeof l.peer === 'object' && l.peer !== null && (l.peer as JsonLine).name === peer));

describe('NAT lab: a late joiner and a rejoin behind port-restricted NATs', { skip }, () => {
  let lab: Lab | undefined;

  before(async () => {
    lab = await createLab({
      sites: [
        { name: 'h', nat: 'port-restricted' },
        { name: 'j', nat: 'port-restricted' },
        { name: 'l', nat: 'port-restricted' },
      ],
    });
    await lab.startServer();
  });

  after(async () => {
    const prefix = lab?.prefix;
    await lab?.destroy();
    if (prefix !== undefined) assert.deepEqual(await labNamespaces(`${prefix}-`), []);
  });

  it('the host and the first player punch and test the late joiner, twice: when it comes and after its game restarts', async () => {
    assert.ok(lab, 'the lab was built');
    const server = ['--server', `${SERVER_ADDRESS}:4000`, '--json'];
    const client = (site: string, args: readonly string[]): LabProcess =>
      (lab as Lab).spawn(site, ['node', CLIENT_CLI_PATH, ...args, ...server], {
        timeoutMs: PROCESS_LIMIT_MS,
      });
    const host = client('h', [
      'host',
      'lab-late',
      '--name',
      'h',
      '--max-players',
      '3',
      '--finalize-after',
      '3000',
      '--keep-open',
      String(KEEP_OPEN_MS),
    ]);
    const first = client('j', ['join', 'lab-late', '--name', 'j']);
    const started = await host.waitForLine(event('punched'), STEP_WAIT_MS);
    assert.ok(started !== undefined, `host punched: ${JSON.stringify(host.lines)}`);

    const late = client('l', ['join', 'lab-late', '--name', 'late']);
    const lateTested = await late.waitForLine(
      (l) => l.event === 'rtt' && late.lines.filter((m) => m.event === 'rtt').length === 2,
      STEP_WAIT_MS,
    );
    assert.ok(lateTested !== undefined, `late joiner tested: ${JSON.stringify(late.lines)}`);
    const lateRtts = late.lines.filter((l) => l.event === 'rtt');
    assert.ok(
      lateRtts.every((l) => (l.received as number) >= 1),
      `late joiner got answers from both: ${JSON.stringify(lateRtts)}`,
    );
    const punched = late.lines.find((l) => l.event === 'punched');
    const names = (punched?.peers as JsonLine[] | undefined)?.map((p) => p.name).sort();
    assert.deepEqual(names, ['h', 'j']);
    // Both tested it before its game dies.
    for (const p of [host, first]) {
      assert.ok(await p.waitForLine(event('rtt', 'late'), STEP_WAIT_MS), 'tested the late joiner');
    }
    late.kill();
    await late.exited;

    const back = client('l', ['join', 'lab-late', '--name', 'late']);
    const backTested = await back.waitForLine(
      (l) => l.event === 'rtt' && back.lines.filter((m) => m.event === 'rtt').length === 2,
      STEP_WAIT_MS,
    );
    assert.ok(backTested !== undefined, `rejoin tested: ${JSON.stringify(back.lines)}`);
    const [hosted, firsted, backed] = await Promise.all([host.exited, first.exited, back.exited]);
    for (const [who, r] of [
      ['host', hosted],
      ['first player', firsted],
      ['rejoined player', backed],
    ] as const) {
      assert.equal(r.code, 0, `${who}: ${JSON.stringify(r.lines)} ${r.stderr.slice(0, 2000)}`);
    }
    for (const [who, r] of [
      ['host', hosted],
      ['first player', firsted],
    ] as const) {
      const joined = r.lines.filter(event('joined', 'late'));
      assert.equal(joined.length, 2, `${who} punched the late joiner twice`);
      const rtts = r.lines.filter(event('rtt', 'late'));
      assert.equal(rtts.length, 2, `${who}: ${JSON.stringify(rtts)}`);
      assert.ok(
        rtts.every((l) => (l.received as number) >= 1),
        `${who} got answers both times`,
      );
      const paths = joined.map((l) => (l.peer as JsonLine).path);
      // Port-restricted NATs on both sides keep their ports: a direct path, no relay.
      assert.ok(
        paths.every((p) => p !== 'relay'),
        `${who}: ${paths.join(', ')}`,
      );
    }
  });
});
