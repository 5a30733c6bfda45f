/**
 * Godot 4 as a program the lab, the benchmark and the tests start: where it is (the Debian-sid
 * chroot that scripts/setup-godot.sh builds; running it needs root), temp projects inside that
 * chroot holding the addon (removed on request and on exit), and the argv that runs one
 * headless with an environment. Godot prints its own JSON lines: run it with
 * `spawnJsonProcess` (or a lab host's `spawn`), which keeps any JSON object it prints.
 */
import { existsSync, rmSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (this module is dist/src/natlab/godot4.js). */
export const REPO_ROOT = fileURLToPath(new URL('../../..', import.meta.url));
export const GODOT4_ROOT = process.env.HOLEPUNCH_GODOT4_ROOT ?? '/opt/holepunch-godot4-root';
export const GODOT4_ADDON_DIR = join(REPO_ROOT, 'godot', 'addons', 'holepunch');
/**
 * The addon's driver game: one traversal configured by the `HP_DRIVER` environment variable
 * (JSON), then the game's own transport; one JSON line per step (see its driver.gd).
 */
export const GODOT4_DRIVER_DIR = join(REPO_ROOT, 'godot', 'tests', 'driver');

/** Why Godot 4 cannot run here (empty when it can). */
export function godot4UnavailableReasons(): string[] {
  const reasons: string[] = [];
  if (process.getuid?.() !== 0) reasons.push('running Godot 4 in its chroot needs root');
  if (!existsSync(join(GODOT4_ROOT, 'usr', 'bin', 'godot')))
    reasons.push(`no Godot 4 chroot at ${GODOT4_ROOT} (run scripts/setup-godot.sh as root)`);
  return reasons;
}

const tempDirs = new Set<string>();
process.on('exit', () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

export interface Godot4Project {
  /** The directory on this machine. */
  readonly dir: string;
  /** The same directory as Godot in the chroot sees it. */
  readonly inEngine: string;
}

/**
 * A temp Godot 4 project inside the chroot: `project.godot` with `mainScene` (or none), or a
 * copy of the project `from`; the addon under addons/holepunch, and `extra` directories copied
 * to the given subpaths.
 */
export async function makeGodot4Project(
  name: string,
  options: { mainScene?: string; from?: string; extra?: readonly [string, string][] } = {},
): Promise<Godot4Project> {
  const dir = await mkdtemp(join(GODOT4_ROOT, 'tmp', `hp-godot4-${name}-`));
  tempDirs.add(dir);
  if (options.from !== undefined)
    await cp(options.from, dir, { recursive: true, dereference: true });
  await mkdir(join(dir, 'addons'), { recursive: true });
  await rm(join(dir, 'addons', 'holepunch'), { recursive: true, force: true });
  await cp(GODOT4_ADDON_DIR, join(dir, 'addons', 'holepunch'), { recursive: true });
  for (const [src, dest] of options.extra ?? [])
    await cp(src, join(dir, dest), { recursive: true });
  if (options.from === undefined) {
    const main = options.mainScene === undefined ? '' : `run/main_scene="${options.mainScene}"\n`;
    await writeFile(
      join(dir, 'project.godot'),
      `config_version=5\n\n[application]\n\nconfig/name="${name}"\n${main}\n[audio]\n\ndriver/driver="Dummy"\n`,
    );
  }
  await mkdir(join(dir, 'home'), { recursive: true });
  return { dir, inEngine: dir.slice(GODOT4_ROOT.length) };
}

/** Removes every temp project made so far. */
export async function removeGodot4Projects(): Promise<void> {
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** argv running Godot 4 headless on `project` (inside the chroot), with `env` set. */
export function godot4Argv(
  project: Godot4Project,
  env: Record<string, string> = {},
  args: readonly string[] = [],
): string[] {
  const home = `${project.inEngine}/home`;
  return [
    'env',
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
    `HOME=${home}`,
    `XDG_CONFIG_HOME=${home}/.config`,
    `XDG_DATA_HOME=${home}/.local/share`,
    `XDG_CACHE_HOME=${home}/.cache`,
    'chroot',
    GODOT4_ROOT,
    'godot',
    '--headless',
    '--path',
    project.inEngine,
    ...args,
  ];
}

/** Script errors Godot printed on stderr (a GDScript bug must fail, not hide). */
export function godot4ScriptErrors(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => /SCRIPT ERROR|Parse Error|Failed to load script/.test(l))
    .map((l) => l.trim());
}

/**
 * Every error line the engine printed on stderr (`ERROR:`, `SCRIPT ERROR:`, `USER ERROR:`, a
 * parse error), not only GDScript's: what a game's developer sees in the output panel, so the
 * demo and the first-hour tests fail on it. `editor: true` leaves out the one line this test
 * chroot causes in every editor run, whatever the project (it has no CA bundle:
 * `Cannot open X509CertificateMbedTLS file '/etc/ssl/certs/ca-certificates.crt'`).
 */
export function godot4EngineErrors(stderr: string, options: { editor?: boolean } = {}): string[] {
  return stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^(ERROR|SCRIPT ERROR|USER ERROR):|Parse Error|Failed to load script/.test(l))
    .filter((l) => !(options.editor === true && /X509Certificate.*ca-certificates\.crt/.test(l)));
}

/** argv importing `project` once headless, as docs/godot.md tells a developer to. */
export function godot4ImportArgv(project: Godot4Project): string[] {
  return godot4Argv(project, {}, ['--import']);
}
