import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { REPO_ROOT } from '../src/natlab/index.js';
import { buildAddonZip, readZip } from './addon-zip.js';

/**
 * The Godot addon as the Asset Library and a release zip ship it (issue 21, "From the
 * stores"), and what a Godot developer reads first (points 3, 6, 11, 16), without Godot: the
 * engine side is test/godot4-store.test.ts and test/godot4-first-hour.test.ts.
 */

const ADDON = join(REPO_ROOT, 'godot', 'addons', 'holepunch');
const GODOT_MD = readFileSync(join(REPO_ROOT, 'docs', 'godot.md'), 'utf8');

describe('the Godot addon as the stores ship it', () => {
  const temps: string[] = [];
  after(async () => {
    for (const dir of temps) await rm(dir, { recursive: true, force: true });
  });

  it("plugin.cfg's version is package.json's (one version for both packages)", () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
      version: string;
    };
    const cfg = readFileSync(join(ADDON, 'plugin.cfg'), 'utf8');
    assert.equal(/^version="([^"]*)"/m.exec(cfg)?.[1], pkg.version);
  });

  it('the addon folder is complete on its own: LICENSE, and a .gd.uid beside every script', () => {
    assert.equal(
      readFileSync(join(ADDON, 'LICENSE'), 'utf8'),
      readFileSync(join(REPO_ROOT, 'LICENSE'), 'utf8'),
    );
    for (const name of readdirSync(ADDON).filter((n) => n.endsWith('.gd'))) {
      const uid = join(ADDON, `${name}.uid`);
      assert.ok(
        existsSync(uid),
        `${name} has no .uid file (Godot 4.4+ gives it another UID per project)`,
      );
      assert.match(readFileSync(uid, 'utf8'), /^uid:\/\/[a-z0-9]+\s*$/);
    }
  });

  it('no symlink in godot/ (a zip or a Windows clone without core.symlinks breaks it)', () => {
    const walk = (dir: string): string[] =>
      readdirSync(dir).flatMap((name) => {
        const path = join(dir, name);
        const stat = lstatSync(path);
        if (stat.isSymbolicLink()) return [path];
        return stat.isDirectory() ? walk(path) : [];
      });
    assert.deepEqual(walk(join(REPO_ROOT, 'godot')), []);
    assert.match(
      readFileSync(join(REPO_ROOT, 'godot', 'project.godot'), 'utf8'),
      /run\/main_scene="res:\/\/demo\/main\.tscn"/,
    );
  });

  it('an archive of the repository (what the Asset Library downloads) holds only the addon', () => {
    const listing = execFileSync('git', ['archive', '--worktree-attributes', 'HEAD'], {
      cwd: REPO_ROOT,
      maxBuffer: 256 * 1024 * 1024,
    });
    const names = execFileSync('tar', ['t'], { input: listing }).toString().trim().split('\n');
    const files = names.filter((n) => !n.endsWith('/'));
    assert.ok(files.length > 0);
    assert.deepEqual(
      files.filter((n) => !n.startsWith('godot/addons/holepunch/')),
      [],
      'files outside the addon in the archive',
    );
    assert.ok(files.includes('godot/addons/holepunch/LICENSE'));
    assert.ok(files.includes('godot/addons/holepunch/holepunch.gd'));
  });

  it('scripts/build-addon-zip.mjs builds a zip of the addon folder under one top folder', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hp-addon-zip-'));
    temps.push(dir);
    const zip = readZip(readFileSync(buildAddonZip(dir)));
    const version = (
      JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
    ).version;
    const prefix = `holepunch-${version}/addons/holepunch/`;
    const expected = readdirSync(ADDON)
      .filter((n) => !n.endsWith('.import'))
      .sort();
    assert.deepEqual(
      [...zip.keys()].map((n) => n.slice(prefix.length)).sort(),
      expected,
      'zip entries',
    );
    for (const name of expected)
      assert.deepEqual(zip.get(prefix + name), readFileSync(join(ADDON, name)), name);
    // Reproducible: the same tree gives the same bytes.
    const again = await mkdtemp(join(tmpdir(), 'hp-addon-zip-'));
    temps.push(again);
    assert.deepEqual(
      readFileSync(buildAddonZip(again)),
      readFileSync(join(dir, 'holepunch-addon.zip')),
    );
  });

  it('docs/godot.md says first what a Godot developer must know', () => {
    const top = GODOT_MD.slice(0, GODOT_MD.indexOf('## Example'));
    // Point 16: Web exports, where a Godot developer looks first (also the README's Godot part).
    assert.match(top, /Web \(HTML5\) exports? cannot use this addon/);
    assert.match(
      readFileSync(join(REPO_ROOT, 'README.md'), 'utf8'),
      /Web \(HTML5\) export cannot use it/,
    );
    // Point 3: the one-line fix for a never-imported project run headless.
    assert.match(top, /Could not find type "HolePunch"/);
    assert.match(top, /godot --headless --path \S+ --import/);
    // Point 1: the example names its child.
    assert.match(GODOT_MD, /must be named\s+`HolePunch`/);
    // Point 11: how to make server_unreachable snappy.
    assert.match(GODOT_MD, /`server_timeout_ms = 3000`/);
  });
});
