import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildAddonZip, readZip } from './addon-zip.js';
import {
  engineErrors,
  godot4Argv,
  godot4UnavailableReasons,
  importArgv,
  makeProject,
  type Proc,
  type Project,
  REPO_ROOT,
  removeProjects,
  skipUnless,
  spawnJson,
  startLoopbackServer,
} from './godot4-support.js';

/**
 * The addon as a Godot 4 developer gets it (issue 21, "From the stores" and point 1): a
 * brand-new project gets the addon (from the release zip that scripts/build-addon-zip.mjs
 * builds, installed as Godot's asset installer does: the zip's top folder left out; or the
 * folder copied as docs/godot.md's Install says), the plugin enabled, and docs/godot.md's
 * example scene and script exactly as written there (only the inspector's server port set to
 * our loopback server's). It is imported once headless, then a host and a joiner press the
 * example's own Host and Join buttons (a test autoload does, nothing else), punch, and ENet
 * carries the example's hello RPC, with no engine ERROR line anywhere.
 */

const reasons = godot4UnavailableReasons();

/** The code block of docs/godot.md right after `<!-- example: NAME ... -->`. */
export async function docsExample(name: string): Promise<string> {
  const docs = await readFile(join(REPO_ROOT, 'docs', 'godot.md'), 'utf8');
  const marker = docs.indexOf(`<!-- example: ${name}`);
  assert.ok(marker >= 0, `docs/godot.md has no example ${name}`);
  const block = /```[a-z]*\n([\s\S]*?)```/.exec(docs.slice(marker));
  assert.ok(block?.[1] !== undefined, `no code block after the ${name} marker`);
  return block[1];
}

/** Presses the example's buttons as a player would (the only code the test adds). */
const AUTOPRESS = `extends Node

func _ready() -> void:
	var cfg: Dictionary = JSON.parse_string(OS.get_environment("HP_PRESS"))
	get_tree().create_timer(float(cfg.deadline_s)).timeout.connect(func() -> void: _quit(3))
	while get_tree().current_scene == null:
		await get_tree().process_frame
	await get_tree().process_frame
	var scene := get_tree().current_scene
	var edit: LineEdit = scene.find_children("*", "LineEdit", true, false)[0]
	edit.text = cfg.code
	for b: Button in scene.find_children("*", "Button", true, false):
		if b.text == cfg.press:
			print(JSON.stringify({"store": "pressed", "button": b.text}))
			b.pressed.emit()
	var status: Label = scene.find_children("*", "Label", true, false)[0]
	if cfg.press == "Host":
		while not status.text.ends_with(" joined"):
			await get_tree().process_frame
		print(JSON.stringify({"store": "hello_received", "status": status.text}))
		await get_tree().create_timer(0.5).timeout
	else:
		await multiplayer.connected_to_server
		print(JSON.stringify({"store": "connected"}))
		await get_tree().create_timer(1.0).timeout
	_quit(0)


func _quit(code: int) -> void:
	if code != 0:
		print(JSON.stringify({"store": "deadline"}))
	if multiplayer.multiplayer_peer != null:
		multiplayer.multiplayer_peer.close()
	get_tree().quit(code)
`;

/** A brand-new project with the example as written, the plugin enabled and the autoload. */
async function exampleProject(name: string, serverPort: number, zip?: string): Promise<Project> {
  const project = await makeProject(name, { mainScene: 'res://lobby.tscn' });
  if (zip !== undefined) {
    // As Godot's asset installer: every entry without the zip's top folder.
    await rm(join(project.dir, 'addons', 'holepunch'), { recursive: true });
    for (const [entry, data] of readZip(await readFile(zip))) {
      const path = join(project.dir, ...entry.split('/').slice(1));
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, data);
    }
  }
  const scene = await docsExample('lobby.tscn');
  assert.match(scene, /rendevouz_port = 4000/);
  await writeFile(
    join(project.dir, 'lobby.tscn'),
    scene.replace('rendevouz_port = 4000', `rendevouz_port = ${serverPort}`),
  );
  await writeFile(join(project.dir, 'lobby.gd'), await docsExample('lobby.gd'));
  await writeFile(join(project.dir, 'autopress.gd'), AUTOPRESS);
  const cfg = await readFile(join(project.dir, 'project.godot'), 'utf8');
  await writeFile(
    join(project.dir, 'project.godot'),
    `${cfg}\n[autoload]\n\nAutopress="*res://autopress.gd"\n\n[editor_plugins]\n\nenabled=PackedStringArray("res://addons/holepunch/plugin.cfg")\n`,
  );
  return project;
}

describe("docs/godot.md's example in a brand-new Godot 4 project", {
  skip: skipUnless(reasons, 'Godot 4'),
}, () => {
  let server: Awaited<ReturnType<typeof startLoopbackServer>> | undefined;
  let zipDir: string | undefined;
  const procs: Proc[] = [];

  before(async () => {
    assert.deepEqual(reasons, [], reasons.join('; '));
    server = await startLoopbackServer();
    zipDir = await mkdtemp(join(tmpdir(), 'hp-store-zip-'));
  });

  after(async () => {
    for (const p of procs) p.kill();
    server?.proc.kill();
    await server?.proc.exited;
    await removeProjects();
    if (zipDir !== undefined) await rm(zipDir, { recursive: true, force: true });
  });

  for (const from of ['the release zip', 'the addon folder copied'] as const) {
    it(`with ${from}: imports once headless, Host and Join punch, ENet carries the hello RPC, no engine error`, async () => {
      assert.ok(server && zipDir);
      const zip = from === 'the release zip' ? buildAddonZip(zipDir) : undefined;
      const code = `store-${process.pid}-${from.length}`;
      const players: Proc[] = [];
      const projects: Project[] = [];
      for (const role of ['host', 'joiner']) {
        const project = await exampleProject(`store-${role}`, server.port, zip);
        const imported = await spawnJson(importArgv(project), 90_000).exited;
        assert.equal(imported.code, 0, imported.stderr.slice(0, 3_000));
        assert.deepEqual(engineErrors(imported.stderr, { editor: true }), [], `${role}: import`);
        projects.push(project);
      }
      for (const [i, project] of projects.entries()) {
        const press = i === 0 ? 'Host' : 'Join';
        const env = { HP_PRESS: JSON.stringify({ press, code, deadline_s: 25 }) };
        const proc = spawnJson(godot4Argv(project, env), 40_000);
        players.push(proc);
        procs.push(proc);
        if (i === 0) await proc.waitForLine((l) => l.store === 'pressed', 15_000);
      }
      const [host, joiner] = players;
      assert.ok(host && joiner);
      const hostEnd = await host.exited;
      const joinerEnd = await joiner.exited;
      for (const [role, proc, end] of [
        ['host', host, hostEnd],
        ['joiner', joiner, joinerEnd],
      ] as const) {
        assert.deepEqual(engineErrors(end.stderr), [], `${role}: engine errors`);
        assert.equal(
          end.code,
          0,
          `${role}: ${JSON.stringify(proc.lines)} ${end.stderr.slice(0, 2_000)}`,
        );
      }
      // The example's hello() RPC ran on the host: it set the status to "<who> joined".
      const hello = host.lines.find((l) => l.store === 'hello_received');
      assert.match(String(hello?.status), /^player\d+ joined$/);
      assert.ok(joiner.lines.some((l) => l.store === 'connected'));
    });
  }
});
