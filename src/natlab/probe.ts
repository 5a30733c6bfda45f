import { type CliEvent, findCliLine, isCliEvent, PROBE_AGENT_PATH } from '../cli/index.js';
import { OBSERVER_ADDRESSES } from './addresses.js';
import type { Lab } from './lab.js';
import { type Filtering, type Mapping, NAT_BEHAVIOUR, type NatType } from './nat-types.js';

/** Observer ports: A, B (other address), A' (other port), C (never contacted), A'' (collision). */
const OBSERVER_PORT = 3478;
const PROBE_TIMEOUT_MS = 15_000;
/** How long host 0 keeps its probe socket open so host 1 can try to reach it by hairpin. */
const HAIRPIN_LINGER_MS = 3_000;

/** What the probe saw for one host, and whether it matches the site's NAT type. */
export interface SiteVerdict {
  readonly site: string;
  readonly host: string;
  readonly nat: NatType;
  readonly mapping: Mapping | 'unknown';
  readonly filtering: Filtering | 'unknown';
  readonly keepsPort: boolean;
  /** undefined when not measurable (random mapping). */
  readonly remapsOnCollision: boolean | undefined;
  /** undefined when the site has a single host. */
  readonly hairpin: boolean | undefined;
  readonly publicEndpoint: string;
  readonly ok: boolean;
  readonly problems: readonly string[];
}

type ProbeLine = CliEvent<'probe-agent', 'probed'>;

const [obsA = '', obsB = '', obsC = ''] = OBSERVER_ADDRESSES;
const OBSERVER_ENDPOINTS = [
  `${obsA}:${OBSERVER_PORT}`,
  `${obsB}:${OBSERVER_PORT}`,
  `${obsA}:${OBSERVER_PORT + 1}`,
  `${obsC}:${OBSERVER_PORT}`,
  `${obsA}:${OBSERVER_PORT + 2}`,
];

/**
 * Probes every host of the lab like a STUN client (RFC 5780): the mapped endpoint seen by
 * two observers on different addresses (mapping behaviour), whether unsolicited datagrams
 * from another port and from a never-contacted address get in (filtering), whether a planted
 * inbound packet moves the next mapping (collision), and hairpinning between hosts of a site.
 */
export async function probeLab(lab: Lab): Promise<SiteVerdict[]> {
  const observer = lab.spawn(
    'observer',
    ['node', PROBE_AGENT_PATH, 'observer', ...OBSERVER_ENDPOINTS],
    {
      timeoutMs: 10 * PROBE_TIMEOUT_MS,
    },
  );
  try {
    const ready = await observer.waitForLine(
      (l) => isCliEvent(l, 'probe-agent', 'observing'),
      PROBE_TIMEOUT_MS,
    );
    if (ready === undefined)
      throw new Error(`probe observer did not start: ${(await killed(observer)).stderr}`);
    const perSite = await Promise.all(lab.sites.map((site) => probeSite(lab, site.name)));
    return perSite.flat();
  } finally {
    observer.kill();
  }
}

async function killed(proc: { kill(): void; exited: Promise<{ stderr: string }> }) {
  proc.kill();
  return proc.exited;
}

async function probeSite(lab: Lab, siteName: string): Promise<SiteVerdict[]> {
  const site = lab.site(siteName);
  const multi = site.hosts.length > 1;
  const procs = site.hosts.map((host) =>
    lab.spawn(
      host.name,
      [
        'node',
        PROBE_AGENT_PATH,
        'probe',
        JSON.stringify(OBSERVER_ENDPOINTS),
        String(host.probePorts[0]),
        String(host.probePorts[1]),
        String(multi ? HAIRPIN_LINGER_MS : 0),
      ],
      { timeoutMs: PROBE_TIMEOUT_MS },
    ),
  );
  const lines = await Promise.all(
    procs.map(async (p) => {
      const line = await p.waitForLine(
        (l) => isCliEvent(l, 'probe-agent', 'probed'),
        PROBE_TIMEOUT_MS,
      );
      return line === undefined ? undefined : findCliLine([line], 'probe-agent', 'probed');
    }),
  );
  let hairpin: boolean | undefined;
  const first = lines[0];
  const second = site.hosts[1];
  if (multi && first?.mappedA !== undefined && second !== undefined) {
    const result = await lab.run(
      second.name,
      [
        'node',
        PROBE_AGENT_PATH,
        'hairpin',
        `${first.mappedA.address}:${first.mappedA.port}`,
        String(second.probePorts[2]),
      ],
      { timeoutMs: PROBE_TIMEOUT_MS },
    );
    hairpin = findCliLine(result.lines, 'probe-agent', 'hairpin')?.answered === true;
  }
  await Promise.all(procs.map((p) => p.exited));
  return site.hosts.map((host, k) =>
    judge(
      site.name,
      host.name,
      site.nat,
      site.publicAddress,
      lines[k],
      multi ? { expected: site.hairpin, seen: hairpin } : undefined,
    ),
  );
}

function judge(
  site: string,
  host: string,
  nat: NatType,
  publicAddress: string,
  line: ProbeLine | undefined,
  hairpin: { expected: boolean; seen: boolean | undefined } | undefined,
): SiteVerdict {
  const problems: string[] = [];
  const expected = NAT_BEHAVIOUR[nat];
  if (line === undefined || line.mappedA === undefined || line.mappedB === undefined) {
    return {
      site,
      host,
      nat,
      mapping: 'unknown',
      filtering: 'unknown',
      keepsPort: false,
      remapsOnCollision: undefined,
      hairpin: hairpin?.seen,
      publicEndpoint: '?',
      ok: false,
      problems: ['no answer from the observers (no route through the router?)'],
    };
  }
  const { mappedA, mappedB } = line;
  const mapping: Mapping =
    mappedA.address === mappedB.address && mappedA.port === mappedB.port
      ? 'endpoint-independent'
      : 'address-and-port-dependent';
  const filtering: Filtering = line.fromOtherAddress
    ? 'endpoint-independent'
    : line.fromOtherPort
      ? 'address-dependent'
      : 'address-and-port-dependent';
  const keepsPort = mappedA.port === line.localPort;
  const remapsOnCollision =
    mapping === 'endpoint-independent' && line.mappedCollision !== undefined
      ? line.mappedCollision.port !== line.collisionPort
      : undefined;
  if (line.fromOtherAddress && !line.fromOtherPort)
    problems.push('accepts another address but not another port');
  if (mappedA.address !== publicAddress)
    problems.push(`public address is ${mappedA.address}, want ${publicAddress}`);
  if (mapping !== expected.mapping)
    problems.push(`mapping is ${mapping}, want ${expected.mapping}`);
  if (filtering !== expected.filtering)
    problems.push(`filtering is ${filtering}, want ${expected.filtering}`);
  if (expected.mapping === 'endpoint-independent') {
    if (keepsPort !== expected.keepsPort)
      problems.push(`keeps port: ${keepsPort}, want ${expected.keepsPort}`);
    if (remapsOnCollision !== expected.remapsOnCollision) {
      problems.push(
        `remaps on collision: ${String(remapsOnCollision)}, want ${expected.remapsOnCollision}`,
      );
    }
  }
  if (hairpin !== undefined && hairpin.seen !== hairpin.expected) {
    problems.push(`hairpin: ${String(hairpin.seen)}, want ${hairpin.expected}`);
  }
  return {
    site,
    host,
    nat,
    mapping,
    filtering,
    keepsPort,
    remapsOnCollision,
    hairpin: hairpin?.seen,
    publicEndpoint: `${mappedA.address}:${mappedA.port}`,
    ok: problems.length === 0,
    problems,
  };
}

const SHORT: Record<string, string> = {
  'endpoint-independent': 'EI',
  'address-dependent': 'AD',
  'address-and-port-dependent': 'APD',
  unknown: '?',
};

/** The verified NAT table as printed by `natlab probe` and `natlab matrix`. */
export function formatVerdicts(verdicts: readonly SiteVerdict[]): string {
  const header = [
    'host',
    'nat type',
    'mapping',
    'filtering',
    'keeps port',
    'collision remap',
    'hairpin',
    'public endpoint',
    'verified',
  ];
  const rows = verdicts.map((v) => [
    v.host,
    v.nat,
    SHORT[v.mapping] ?? v.mapping,
    SHORT[v.filtering] ?? v.filtering,
    v.keepsPort ? 'yes' : 'no',
    v.remapsOnCollision === undefined ? 'n/a' : v.remapsOnCollision ? 'yes' : 'no',
    v.hairpin === undefined ? 'n/a' : v.hairpin ? 'yes' : 'no',
    v.publicEndpoint,
    v.ok ? 'ok' : `FAIL: ${v.problems.join('; ')}`,
  ]);
  return markdownTable(header, rows);
}

export function markdownTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [
    line(header),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.map(line),
  ].join('\n');
}
