import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DoctorJson } from '../src/cli/doctor.js';
import { siteCarrierLink } from '../src/natlab/addresses.js';
import { runCommand } from '../src/natlab/command.js';
import {
  CLIENT_CLI_PATH,
  createLab,
  type Lab,
  labNamespaces,
  labUnavailableReasons,
  NAT_BEHAVIOUR,
  type NatType,
  type ProcessResult,
  SERVER_ADDRESS,
  SERVER_WITH_ALT_ADDRESS_ARGS,
} from '../src/natlab/index.js';
import { FAST_EXPIRY_S } from '../src/natlab/nat-types.js';
import { skipUnless } from './suites.js';

/**
 * Issue 13: `holepunch-client doctor`'s verdict matches the router's configured type for
 * every NAT type the lab builds, every run (each site is diagnosed `RUNS` times, one after
 * another: the sequential NAT's next port must not be taken by a parallel run).
 */
const RUNS = 2;
const DOCTOR_LIMIT_MS = 20_000;

/**
 * No hairpinning site: the lab's Linux routers hairpin between two hosts of a LAN (the probe
 * checks it) but drop a packet hairpinned back to the host that sent it, which is what the
 * doctor's test needs (two sockets of one machine). Hairpinning is read as `true` with no
 * NAT (here and on loopback) and `false` behind every router that does not hairpin.
 */
const SITES: readonly { name: string; nat: NatType; hosts?: number; hairpin?: boolean }[] = [
  { name: 'pub', nat: 'none' },
  { name: 'fc', nat: 'full-cone' },
  { name: 'ar', nat: 'address-restricted' },
  { name: 'pr', nat: 'port-restricted' },
  { name: 'sym', nat: 'symmetric' },
  { name: 'pra', nat: 'port-restricted-accepting' },
  { name: 'seq', nat: 'symmetric-sequential' },
  { name: 'fx', nat: 'fast-expiry' },
  { name: 'dbl', nat: 'double-nat' },
];

const reasons = await labUnavailableReasons();
const skip = skipUnless(reasons, 'NAT lab');

describe('NAT lab: holepunch-client doctor names every NAT type right against a server with --host and --alt-address (the full RFC 5780 run)', {
  skip,
}, () => {
  let lab: Lab | undefined;

  before(async () => {
    // Built with the probe: every router is first verified to behave as its type says.
    lab = await createLab({ sites: SITES });
    // A second address tells endpoint-independent from address-dependent mapping and
    // filtering; the alternate port is the server's default.
    await lab.startServer({ args: SERVER_WITH_ALT_ADDRESS_ARGS });
  });

  after(async () => {
    const prefix = lab?.prefix;
    await lab?.destroy();
    if (prefix !== undefined) assert.deepEqual(await labNamespaces(`${prefix}-`), []);
  });

  for (const site of SITES) {
    const want = NAT_BEHAVIOUR[site.nat];
    const hairpin = site.hairpin === true || site.nat === 'none';
    it(`${site.name} (${site.nat}${site.hairpin ? ', hairpin' : ''}): mapping ${want.mapping}, filtering ${want.filtering}, ports ${want.ports}, hairpin ${hairpin}, ${RUNS} runs`, async () => {
      assert.ok(lab, 'the lab was built');
      for (let run = 0; run < RUNS; run++) {
        // Each run starts from a NAT that remembers nothing, as a fresh trial does.
        await lab.flushConntrack(site.name);
        const result: ProcessResult = await lab.run(
          site.name,
          ['node', CLIENT_CLI_PATH, 'doctor', '--server', `${SERVER_ADDRESS}:4000`, '--json'],
          { timeoutMs: DOCTOR_LIMIT_MS },
        );
        assert.equal(result.code, 0, `run ${run}: ${result.stderr}`);
        const json = result.lines[0] as unknown as DoctorJson;
        assert.deepEqual(
          {
            mapping: json.mapping,
            filtering: json.filtering,
            ports: json.ports,
            hairpin: json.hairpin,
            untested: json.untested,
          },
          {
            mapping: want.mapping,
            filtering: want.filtering,
            ports: want.ports,
            hairpin,
            untested: [],
          },
          `run ${run}: ${JSON.stringify(json)}`,
        );
        assert.deepEqual(json.publicAddresses, [lab.site(site.name).publicAddress]);
      }
    });
  }

  it('the double NAT translates twice: the home router to its carrier-link address, the carrier to the public one', async () => {
    assert.ok(lab, 'the lab was built');
    const site = lab.site('dbl');
    const r = await lab.run(
      'dbl',
      ['node', CLIENT_CLI_PATH, 'doctor', '--server', `${SERVER_ADDRESS}:4000`, '--json'],
      { timeoutMs: DOCTOR_LIMIT_MS },
    );
    assert.equal(r.code, 0);
    const flows = async (ns: string) =>
      (await runCommand(['ip', 'netns', 'exec', ns, 'conntrack', '-L', '-p', 'udp'])).stdout;
    const link = siteCarrierLink(lab.sites.indexOf(site));
    // Each NAT's reply tuple names its own outside address as the destination.
    assert.match(
      await flows(site.routerNs as string),
      new RegExp(`dst=${link.router.replaceAll('.', '\\.')} `),
    );
    assert.match(
      await flows(site.carrierNs as string),
      new RegExp(`dst=${site.publicAddress.replaceAll('.', '\\.')} `),
    );
  });

  it(`the fast-expiry router forgets its mappings after ${FAST_EXPIRY_S} s of silence, the port-restricted one does not`, async () => {
    assert.ok(lab, 'the lab was built');
    const udpFlows = async (site: string) => {
      const ns = lab?.site(site).routerNs as string;
      const r = await runCommand(['ip', 'netns', 'exec', ns, 'conntrack', '-L', '-p', 'udp']);
      return r.stdout.split('\n').filter((l) => l.startsWith('udp')).length;
    };
    // Fresh flows on both (the doctor's), then silence.
    for (const site of ['fx', 'pr']) {
      const r = await lab.run(
        site,
        ['node', CLIENT_CLI_PATH, 'doctor', '--server', `${SERVER_ADDRESS}:4000`, '--json'],
        { timeoutMs: DOCTOR_LIMIT_MS },
      );
      assert.equal(r.code, 0);
    }
    assert.ok((await udpFlows('fx')) > 0 && (await udpFlows('pr')) > 0);
    const deadline = performance.now() + (FAST_EXPIRY_S + 6) * 1000;
    while ((await udpFlows('fx')) > 0 && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(await udpFlows('fx'), 0, 'the fast-expiry router still holds flows');
    assert.ok((await udpFlows('pr')) > 0, 'a default router keeps them 30 s');
  });
});
