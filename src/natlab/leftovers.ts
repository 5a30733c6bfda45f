import { runCommand } from './command.js';
import { killNamespaceProcesses, LAB_PREFIX } from './lab.js';

/** Lab namespaces present on the machine (`ip netns list`), optionally only one prefix's. */
export async function labNamespaces(prefix = LAB_PREFIX): Promise<string[]> {
  const result = await runCommand(['ip', 'netns', 'list']);
  return result.stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(prefix));
}

function ownerAlive(ns: string): boolean {
  const pid = Number(/^hp-(\d+)-/.exec(ns)?.[1]);
  if (!Number.isInteger(pid) || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes leftover lab namespaces (and what still runs in them). Namespaces of a lab whose
 * process is still alive are kept unless `force`: another run may be using them.
 */
export async function removeLeftovers(
  force = false,
): Promise<{ removed: string[]; kept: string[] }> {
  const removed: string[] = [];
  const kept: string[] = [];
  for (const ns of await labNamespaces()) {
    if (!force && ownerAlive(ns)) {
      kept.push(ns);
      continue;
    }
    await killNamespaceProcesses(ns);
    await runCommand(['ip', 'netns', 'del', ns]);
    removed.push(ns);
  }
  return { removed, kept };
}
