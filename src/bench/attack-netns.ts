/**
 * The attack phase as an operator deploys the server per docs/operations.md: behind the
 * shipped nftables ruleset (`deploy/holepunch.nft`), which drops one source's flood in the
 * kernel. It runs in a network namespace of its own (root), so the ruleset touches nothing
 * else; the namespace and every process in it are removed when it ends, also on failure.
 */
import { fileURLToPath } from 'node:url';
import {
  killNamespaceProcesses,
  LAB_PREFIX,
  labUnavailableReasons,
  mustRun,
  runCommand,
  spawnJsonProcess,
} from '../natlab/index.js';
import { type AttackPhaseFigures, type AttackPlan, attackReport } from './attack-phase.js';

export const FIREWALL_RULES = fileURLToPath(
  new URL('../../../deploy/holepunch.nft', import.meta.url),
);
const ATTACK_CHILD = fileURLToPath(new URL('./attack-child.js', import.meta.url));

/**
 * Empty when the firewalled attack phase can run here; otherwise why not: what the NAT lab
 * needs (root, namespaces, `ip`), and `nft`.
 */
export async function firewallUnavailableReasons(): Promise<string[]> {
  const reasons = await labUnavailableReasons();
  const nft = await runCommand(['nft', '--version']).catch(() => ({ code: 127 }));
  if (nft.code !== 0) reasons.push('nft is missing (Debian: apt-get install -y nftables)');
  return reasons;
}

/** `plan`'s floods against a server behind `deploy/holepunch.nft`, in a namespace. */
export async function runAttackPhaseBehindFirewall(plan: AttackPlan): Promise<AttackPhaseFigures> {
  const ns = `${LAB_PREFIX}${process.pid}-fw`;
  const budgetMs =
    plan.baseMs +
    plan.kinds.length * (plan.floodMs + 2000) +
    plan.memoryAttackMs +
    plan.memoryAttackNoLimitsMs +
    60_000;
  await mustRun(['ip', 'netns', 'add', ns]);
  try {
    await mustRun(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    const { process: child } = spawnJsonProcess(
      [
        'ip',
        'netns',
        'exec',
        ns,
        process.execPath,
        ATTACK_CHILD,
        JSON.stringify({ ...plan, firewallRules: FIREWALL_RULES }),
      ],
      budgetMs,
    );
    const result = await child.exited;
    const figures = result.lines.find((line) => Array.isArray(line.floods));
    if (figures === undefined) {
      throw new Error(
        `the firewalled attack phase printed no figures (exit ${result.code ?? result.signal}${result.timedOut ? ', timed out' : ''}): ${result.stderr.slice(-2000)}`,
      );
    }
    return figures as unknown as AttackPhaseFigures;
  } finally {
    await killNamespaceProcesses(ns);
    await runCommand(['ip', 'netns', 'del', ns]);
  }
}

/**
 * The bench's second attack table: `plan`'s floods behind the ruleset (the memory attacks
 * are the server's own business and run once, unfirewalled), or why it could not run here.
 */
export async function runFirewalledAttacks(plan: AttackPlan): Promise<AttackPhaseFigures | string> {
  const reasons = await firewallUnavailableReasons();
  if (reasons.length > 0) return reasons.join('; ');
  return runAttackPhaseBehindFirewall({ ...plan, memoryAttackMs: 0, memoryAttackNoLimitsMs: 0 });
}

export function firewalledReport(f: AttackPhaseFigures | string): {
  json: Record<string, unknown>;
  lines: string[];
} {
  const setting = 'behind deploy/holepunch.nft (nftables, per-source limits in the server too)';
  if (typeof f === 'string') {
    return {
      json: { firewalled_attacks_skipped: f },
      lines: [`Attacks ${setting}: skipped (${f})`],
    };
  }
  const { json, lines } = attackReport(f, setting);
  return { json: { firewalled_attacks: json }, lines };
}
