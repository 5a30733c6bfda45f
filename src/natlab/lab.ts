import type { ChildProcess } from 'node:child_process';
import { isServerRecord, SERVER_CLI_PATH } from '../cli/index.js';
import { HolePunchError } from '../errors.js';
import {
  DEFAULT_SERVER_PORT,
  OBSERVER_ADDRESSES,
  SERVER_ADDRESS,
  SERVER_ALT_ADDRESS,
  siteCarrierLink,
  siteLan,
  sitePublicAddress,
} from './addresses.js';
import { mustRun, runCommand, runCommandSync } from './command.js';
import {
  type JsonProcess,
  type ProcessResult,
  spawnJsonProcess,
  withNodeBinary,
} from './json-process.js';
import {
  CONTACTED_LIST,
  carrierRuleset,
  FAST_EXPIRY_S,
  isNatType,
  lossRuleset,
  type NatType,
  routerRuleset,
} from './nat-types.js';
import { assertLabCapable } from './preflight.js';
import { probeLab, type SiteVerdict } from './probe.js';

/** Every lab namespace starts with this, so `natlab down` can find leftovers. */
export const LAB_PREFIX = 'hp-';
/** Most sites a lab holds: 192.0.2.0/24 is cut into /28 LANs (the last one stays unused). */
export const MAX_SITES = 15;
/** Most hosts behind one router (a /28 has 13 usable host addresses, and port ranges must fit). */
export const MAX_HOSTS_PER_SITE = 4;
/** A process in the lab is killed after this long unless the caller says otherwise. */
const DEFAULT_PROCESS_TIMEOUT_MS = 60_000;
const SERVER_START_TIMEOUT_MS = 15_000;

/**
 * `startServer` flags for the doctor's full RFC 5780 run: a second address (which needs the
 * main one as `--host`, since replies leave from the address they came to). The alternate
 * port is the server's default (PORT+1).
 */
export const SERVER_WITH_ALT_ADDRESS_ARGS: readonly string[] = [
  '--host',
  SERVER_ADDRESS,
  '--alt-address',
  SERVER_ALT_ADDRESS,
];
/** The server lives as long as the lab; this only bounds a forgotten one. */
const SERVER_LIFETIME_MS = 6 * 60 * 60 * 1_000;

export interface SiteSpec {
  /** Short name used to address the site's hosts: `name` is host 0, `name/1` host 1. */
  readonly name: string;
  readonly nat: NatType;
  /** Hosts behind the router (default 1; a public `none` site has exactly one). */
  readonly hosts?: number;
  /** The router forwards packets from its LAN to its own public address back into the LAN. */
  readonly hairpin?: boolean;
  /** Drop probability on the router's uplink, each direction (0..1). */
  readonly loss?: number;
}

export interface LabSpec {
  readonly sites: readonly SiteSpec[];
  /** Probe and verify every site's NAT before use (default true). */
  readonly probe?: boolean;
}

export interface LabHost {
  /** `site` for host 0, `site/1` for host 1, ... */
  readonly name: string;
  readonly site: string;
  readonly ns: string;
  readonly address: string;
  /** Ephemeral ports of this host (its `ip_local_port_range`); the probe uses ports above it. */
  readonly portRange: readonly [number, number];
  /** Ports the probe binds: main, collision test, hairpin test (above the ephemeral range). */
  readonly probePorts: readonly [number, number, number];
}

export interface LabSite {
  readonly name: string;
  readonly nat: NatType;
  readonly hairpin: boolean;
  loss: number;
  /** The router namespace, or undefined for a public (`none`) site. */
  readonly routerNs: string | undefined;
  /** A `double-nat` site's carrier-grade NAT in front of its router. */
  readonly carrierNs?: string;
  readonly publicAddress: string;
  readonly lanCidr: string | undefined;
  readonly hosts: readonly LabHost[];
}

/** A process running inside a lab namespace. */
export type LabProcess = JsonProcess;

const liveLabs = new Set<Lab>();
let labCounter = 0;
let handlersInstalled = false;

function onSignal(signal: NodeJS.Signals): void {
  for (const lab of liveLabs) lab.destroySync();
  process.exit(signal === 'SIGINT' ? 130 : 143);
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const lab of liveLabs) lab.destroySync();
  });
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/**
 * A built topology. Namespaces: `<prefix>-inet` holds the public bridge; `-srv` the
 * rendezvous server; `-obs` the probe observers; per site `-r<i>` the router and `-h<i>-<k>`
 * its hosts (a public site has only `-h<i>-0`, attached to the bridge).
 */
export class Lab {
  readonly prefix: string;
  readonly sites: LabSite[] = [];
  readonly serverAddress = SERVER_ADDRESS;
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private destroyed = false;
  /** The port `startServer` bound, once it did. */
  serverPort: number | undefined;
  /** What the probe found per host (empty when the lab was built without probing). */
  verdicts: SiteVerdict[] = [];

  constructor() {
    labCounter += 1;
    this.prefix = `${LAB_PREFIX}${process.pid}-${labCounter}`;
  }

  get namespaceNames(): readonly string[] {
    return this.namespaces;
  }

  get serverNs(): string {
    return `${this.prefix}-srv`;
  }

  get observerNs(): string {
    return `${this.prefix}-obs`;
  }

  site(name: string): LabSite {
    const site = this.sites.find((s) => s.name === name);
    if (site === undefined) throw new HolePunchError('bad_request', `no site named ${name}`);
    return site;
  }

  /** `site` or `site/k` for a host; `server` and `observer` for the public namespaces. */
  host(name: string): LabHost {
    const [siteName = '', index = '0'] = name.split('/');
    const host = this.site(siteName).hosts[Number(index)];
    if (host === undefined) throw new HolePunchError('bad_request', `no host ${name}`);
    return host;
  }

  namespaceOf(target: string): string {
    if (target === 'server') return this.serverNs;
    if (target === 'observer') return this.observerNs;
    return this.host(target).ns;
  }

  private async addNamespace(name: string): Promise<void> {
    await mustRun(['ip', 'netns', 'add', name]);
    this.namespaces.push(name);
    await mustRun(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
  }

  /** Runs a shell snippet inside a namespace (sysctls under /proc/sys/net are per namespace). */
  private async nsShell(ns: string, script: string): Promise<void> {
    await mustRun(['ip', 'netns', 'exec', ns, 'sh', '-ec', script]);
  }

  /**
   * Plugs namespace `ns` into the public bridge with `address` on its `wan` interface. The
   * veth pair is created inside the bridge namespace with its peer placed straight into
   * `ns`: nothing ever exists in the root namespace.
   */
  private async attachPublic(
    ns: string,
    bridgePort: string,
    address: string,
    extra: string[] = [],
  ): Promise<void> {
    const inet = `${this.prefix}-inet`;
    await mustRun([
      'ip',
      '-n',
      inet,
      'link',
      'add',
      bridgePort,
      'type',
      'veth',
      'peer',
      'name',
      'wan',
      'netns',
      ns,
    ]);
    await mustRun(['ip', '-n', inet, 'link', 'set', bridgePort, 'master', 'br0', 'up']);
    await mustRun(['ip', '-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'wan']);
    for (const more of extra)
      await mustRun(['ip', '-n', ns, 'addr', 'add', `${more}/24`, 'dev', 'wan']);
    await mustRun(['ip', '-n', ns, 'link', 'set', 'wan', 'up']);
    // Everything public is on one bridge: every public address is on-link, whatever its range.
    await mustRun(['ip', '-n', ns, 'route', 'add', 'default', 'dev', 'wan']);
  }

  /** Builds namespaces, links, addresses and NAT rules (not loss: see `setLoss`). */
  async build(spec: LabSpec): Promise<void> {
    if (spec.sites.length > MAX_SITES) {
      throw new HolePunchError('bad_request', `a lab holds at most ${MAX_SITES} sites`);
    }
    const inet = `${this.prefix}-inet`;
    await this.addNamespace(inet);
    await mustRun(['ip', '-n', inet, 'link', 'add', 'br0', 'type', 'bridge']);
    await mustRun(['ip', '-n', inet, 'link', 'set', 'br0', 'up']);
    await this.addNamespace(this.serverNs);
    await this.attachPublic(this.serverNs, 'srv', SERVER_ADDRESS, [SERVER_ALT_ADDRESS]);
    await this.addNamespace(this.observerNs);
    const [firstObserver, ...otherObservers] = OBSERVER_ADDRESSES;
    await this.attachPublic(this.observerNs, 'obs', firstObserver, otherObservers);

    for (const [i, spec_] of spec.sites.entries()) {
      await this.buildSite(i, spec_);
    }
  }

  private async buildSite(i: number, spec: SiteSpec): Promise<void> {
    if (!/^[a-z0-9-]{1,24}$/.test(spec.name) || this.sites.some((s) => s.name === spec.name)) {
      throw new HolePunchError(
        'bad_request',
        `site name ${JSON.stringify(spec.name)} is invalid or taken`,
      );
    }
    if (!isNatType(spec.nat))
      throw new HolePunchError('bad_request', `unknown NAT type ${String(spec.nat)}`);
    const hostCount = spec.nat === 'none' ? 1 : (spec.hosts ?? 1);
    if (hostCount < 1 || hostCount > MAX_HOSTS_PER_SITE) {
      throw new HolePunchError('bad_request', `a site has 1..${MAX_HOSTS_PER_SITE} hosts`);
    }
    if ((spec.nat === 'full-cone' || spec.nat === 'address-restricted') && hostCount > 1) {
      // Inbound new flows go to one "DMZ" host; a second host would see port-restricted filtering.
      throw new HolePunchError('bad_request', `a ${spec.nat} site has exactly one host`);
    }
    if (spec.hairpin === true && hostCount < 2) {
      throw new HolePunchError(
        'bad_request',
        `hairpin on site ${spec.name} needs at least two hosts`,
      );
    }
    const publicAddress = sitePublicAddress(i);
    const hosts: LabHost[] = [];
    const portsFor = (k: number) => {
      // Host k owns [20000+10000k, 28999+10000k] as ephemeral ports and probes from above.
      const low = 20_000 + 10_000 * k;
      return {
        portRange: [low, low + 8_999] as const,
        probePorts: [low + 9_000, low + 9_001, low + 9_002] as const,
      };
    };
    if (spec.nat === 'none') {
      const ns = `${this.prefix}-h${i}-0`;
      await this.addNamespace(ns);
      await this.attachPublic(ns, `s${i}`, publicAddress);
      hosts.push({ name: spec.name, site: spec.name, ns, address: publicAddress, ...portsFor(0) });
      this.sites.push({
        name: spec.name,
        nat: 'none',
        hairpin: false,
        loss: 0,
        routerNs: undefined,
        publicAddress,
        lanCidr: undefined,
        hosts,
      });
    } else {
      const router = `${this.prefix}-r${i}`;
      const lan = siteLan(i);
      const lanCidr = lan.cidr;
      const gateway = lan.gateway;
      await this.addNamespace(router);
      let carrier: string | undefined;
      if (spec.nat === 'double-nat') {
        carrier = `${this.prefix}-c${i}`;
        await this.addNamespace(carrier);
        await this.attachPublic(carrier, `s${i}`, publicAddress);
        await this.linkCarrier(i, carrier, router);
      } else {
        await this.attachPublic(router, `s${i}`, publicAddress);
      }
      await mustRun(['ip', '-n', router, 'link', 'add', 'lan', 'type', 'bridge']);
      await mustRun(['ip', '-n', router, 'addr', 'add', `${gateway}/28`, 'dev', 'lan']);
      await mustRun(['ip', '-n', router, 'link', 'set', 'lan', 'up']);
      // Forwarding only inside the router namespace; the root namespace is never touched.
      await this.nsShell(router, 'echo 1 > /proc/sys/net/ipv4/ip_forward');
      if (spec.nat === 'fast-expiry') {
        // conntrack's UDP timeouts are per network namespace: only this router forgets fast.
        const netfilter = '/proc/sys/net/netfilter';
        await this.nsShell(
          router,
          `echo ${FAST_EXPIRY_S} > ${netfilter}/nf_conntrack_udp_timeout && echo ${FAST_EXPIRY_S} > ${netfilter}/nf_conntrack_udp_timeout_stream`,
        );
      }
      for (let k = 0; k < hostCount; k++) {
        const ns = `${this.prefix}-h${i}-${k}`;
        const address = lan.host(k);
        await this.addNamespace(ns);
        await mustRun([
          'ip',
          '-n',
          router,
          'link',
          'add',
          `h${k}`,
          'type',
          'veth',
          'peer',
          'name',
          'eth0',
          'netns',
          ns,
        ]);
        await mustRun(['ip', '-n', router, 'link', 'set', `h${k}`, 'master', 'lan', 'up']);
        await mustRun(['ip', '-n', ns, 'addr', 'add', `${address}/28`, 'dev', 'eth0']);
        await mustRun(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
        await mustRun(['ip', '-n', ns, 'route', 'add', 'default', 'via', gateway]);
        const name = k === 0 ? spec.name : `${spec.name}/${k}`;
        hosts.push({ name, site: spec.name, ns, address, ...portsFor(k) });
      }
      const ruleset = routerRuleset({
        type: spec.nat,
        lanCidr,
        // Behind a carrier NAT the router's own "public" address is its carrier-link one.
        publicAddress: carrier === undefined ? publicAddress : siteCarrierLink(i).router,
        // Hairpin routing by port covers the whole block of the host, probe ports included.
        hosts: hosts.map((h) => ({
          address: h.address,
          portRange: [h.portRange[0], h.portRange[0] + 9_999],
        })),
        hairpin: spec.hairpin === true,
      });
      await mustRun(['ip', 'netns', 'exec', router, 'iptables-restore'], { input: ruleset });
      this.sites.push({
        name: spec.name,
        nat: spec.nat,
        hairpin: spec.hairpin === true,
        loss: 0,
        routerNs: router,
        ...(carrier === undefined ? {} : { carrierNs: carrier }),
        publicAddress,
        lanCidr,
        hosts,
      });
    }
    for (const host of hosts) {
      await this.nsShell(
        host.ns,
        `echo "${host.portRange[0]} ${host.portRange[1]}" > /proc/sys/net/ipv4/ip_local_port_range`,
      );
    }
  }

  /**
   * The link between a double NAT's carrier (`inside`) and home router (`wan`), the carrier's
   * forwarding and rules. The router's `wan` is then this link, so loss applies there.
   */
  private async linkCarrier(i: number, carrier: string, router: string): Promise<void> {
    const link = siteCarrierLink(i);
    await mustRun([
      'ip',
      '-n',
      carrier,
      'link',
      'add',
      'inside',
      'type',
      'veth',
      'peer',
      'name',
      'wan',
      'netns',
      router,
    ]);
    await mustRun(['ip', '-n', carrier, 'addr', 'add', `${link.carrier}/30`, 'dev', 'inside']);
    await mustRun(['ip', '-n', carrier, 'link', 'set', 'inside', 'up']);
    await mustRun(['ip', '-n', router, 'addr', 'add', `${link.router}/30`, 'dev', 'wan']);
    await mustRun(['ip', '-n', router, 'link', 'set', 'wan', 'up']);
    await mustRun(['ip', '-n', router, 'route', 'add', 'default', 'via', link.carrier]);
    await this.nsShell(carrier, 'echo 1 > /proc/sys/net/ipv4/ip_forward');
    await mustRun(['ip', 'netns', 'exec', carrier, 'iptables-restore'], {
      input: carrierRuleset(),
    });
  }

  /** Sets the drop probability on a site's uplink (router, or the public host itself). */
  async setLoss(siteName: string, probability: number): Promise<void> {
    if (!(probability >= 0 && probability < 1))
      throw new HolePunchError('bad_request', 'loss must be in [0, 1)');
    const site = this.site(siteName);
    const ns = site.routerNs ?? site.hosts[0]?.ns;
    if (ns === undefined) return;
    await mustRun(['ip', 'netns', 'exec', ns, 'iptables-restore'], {
      input: lossRuleset(probability),
    });
    site.loss = probability;
  }

  /** Starts a process in a namespace; `node` as argv[0] means this very Node binary. */
  spawn(target: string, argv: readonly string[], options: { timeoutMs?: number } = {}): LabProcess {
    if (this.destroyed) throw new HolePunchError('lab_unavailable', 'the lab is torn down');
    const ns = this.namespaceOf(target);
    const { process: proc, child } = spawnJsonProcess(
      ['ip', 'netns', 'exec', ns, ...withNodeBinary(argv)],
      options.timeoutMs ?? DEFAULT_PROCESS_TIMEOUT_MS,
    );
    this.children.add(child);
    child.on('close', () => this.children.delete(child));
    return proc;
  }

  /** Runs a process in a namespace to completion and returns its JSON lines. */
  run(
    target: string,
    argv: readonly string[],
    options: { timeoutMs?: number } = {},
  ): Promise<ProcessResult> {
    return this.spawn(target, argv, options).exited;
  }

  /**
   * Starts our rendezvous server (`holepunch-server`) in the public server namespace and
   * waits for its startup line. Killed with the lab. Without `args` it is started exactly as
   * the README's first command: `holepunch-server PORT y` (or `n`), no flag, so every figure
   * the lab measures is for the server users run. `args` (flags after those two) is for the
   * tests of a flag, which say so in their names (the doctor's full RFC 5780 run needs
   * `--host` and `--alt-address`: `SERVER_WITH_ALT_ADDRESS_ARGS`).
   */
  async startServer(
    options: { port?: number; autostart?: boolean; args?: readonly string[] } = {},
  ): Promise<LabProcess> {
    const port = options.port ?? DEFAULT_SERVER_PORT;
    const server = this.spawn(
      'server',
      [
        'node',
        SERVER_CLI_PATH,
        String(port),
        options.autostart === false ? 'n' : 'y',
        ...(options.args ?? []),
      ],
      { timeoutMs: SERVER_LIFETIME_MS },
    );
    const ready = await server.waitForLine(
      (l) => isServerRecord(l, 'listening') && l.port === port,
      SERVER_START_TIMEOUT_MS,
    );
    if (ready === undefined) {
      server.kill();
      const result = await server.exited;
      throw new HolePunchError(
        'lab_unavailable',
        `the rendezvous server did not start: ${result.stderr.slice(0, 2_000)}`,
      );
    }
    this.serverPort = port;
    return server;
  }

  /**
   * Forgets every UDP flow a site's NAT remembers, so the next trial starts with no open
   * holes (only safe while no other trial uses the site).
   */
  async flushConntrack(siteName: string): Promise<void> {
    const site = this.site(siteName);
    const ns = site.routerNs ?? site.hosts[0]?.ns;
    if (ns === undefined) return;
    // Exit code 1 means "nothing to delete".
    await runCommand(['ip', 'netns', 'exec', ns, 'conntrack', '-D', '-p', 'udp']);
    if (site.carrierNs !== undefined) {
      await runCommand(['ip', 'netns', 'exec', site.carrierNs, 'conntrack', '-D', '-p', 'udp']);
    }
    // An address-restricted router's permissions are the addresses its LAN sent to: forgotten
    // with the flows (the list is per router, not per mapping, so it must be cleared too).
    if (site.nat === 'address-restricted') {
      await this.nsShell(ns, `echo / > /proc/net/xt_recent/${CONTACTED_LIST}`);
    }
  }

  /** Kills every process the lab started, then deletes its namespaces (idempotent). */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const child of this.children) child.kill('SIGKILL');
    for (const ns of [...this.namespaces].reverse()) {
      await killNamespaceProcesses(ns);
      await runCommand(['ip', 'netns', 'del', ns]);
    }
    this.namespaces.length = 0;
    liveLabs.delete(this);
  }

  /** For exit and signal handlers, where nothing asynchronous runs any more. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const child of this.children) child.kill('SIGKILL');
    for (const ns of [...this.namespaces].reverse()) runCommandSync(['ip', 'netns', 'del', ns]);
    this.namespaces.length = 0;
    liveLabs.delete(this);
  }

  /** Registers the lab for teardown on exit and signals (called by `createLab`). */
  track(): void {
    installHandlers();
    liveLabs.add(this);
  }
}

/** Kills what still runs in a lab namespace, by pid (all of it was started by a lab). */
export async function killNamespaceProcesses(ns: string): Promise<void> {
  const pids = await runCommand(['ip', 'netns', 'pids', ns]);
  for (const pid of pids.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p))) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/**
 * Builds a lab (refusing clearly when it cannot), probes every site's NAT (throwing
 * `nat_misbehaved` when one differs from its type), then applies loss. Tears everything down
 * again if any step fails.
 */
export async function createLab(spec: LabSpec): Promise<Lab> {
  await assertLabCapable();
  const lab = new Lab();
  lab.track();
  try {
    await lab.build(spec);
    if (spec.probe !== false) {
      lab.verdicts = await probeLab(lab);
      const wrong = lab.verdicts.filter((v) => !v.ok);
      if (wrong.length > 0) {
        throw new HolePunchError(
          'nat_misbehaved',
          `NAT probe failed:\n${wrong.map((v) => `  ${v.host}: ${v.problems.join('; ')}`).join('\n')}`,
        );
      }
    }
    for (const site of spec.sites) {
      if ((site.loss ?? 0) > 0) await lab.setLoss(site.name, site.loss ?? 0);
    }
  } catch (error) {
    await lab.destroy();
    throw error;
  }
  return lab;
}
