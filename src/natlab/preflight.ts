import { HolePunchError } from '../errors.js';
import { runCommand } from './command.js';

/**
 * Refuses early, with a message a person can act on, when the lab cannot be built here:
 * namespaces and NAT rules need root, `ip` and `iptables`.
 */
export async function assertLabCapable(): Promise<void> {
  const reasons = await labUnavailableReasons();
  if (reasons.length > 0) {
    throw new HolePunchError(
      'lab_unavailable',
      `the NAT lab cannot run here: ${reasons.join('; ')}`,
    );
  }
}

/** Empty when the lab can run; otherwise why not (used by tests to explain a skip). */
export async function labUnavailableReasons(): Promise<string[]> {
  const reasons: string[] = [];
  if (process.platform !== 'linux')
    reasons.push(`needs Linux network namespaces (this is ${process.platform})`);
  if (process.getuid?.() !== 0)
    reasons.push('needs root (network namespaces, veth pairs and iptables)');
  for (const [tool, argv] of [
    ['ip (iproute2)', ['ip', '-V']],
    ['iptables', ['iptables', '-V']],
    ['iptables-restore', ['iptables-restore', '--version']],
  ] as const) {
    const result = await runCommand(argv).catch(() => ({ code: 127 }));
    if (result.code !== 0)
      reasons.push(`${tool} is missing (Debian: apt-get install -y iproute2 iptables)`);
  }
  return reasons;
}
