#!/usr/bin/env node
// Builds the Godot addon's release zip (for the Godot Asset Library or a GitHub release):
//   node scripts/build-addon-zip.mjs [OUT.zip]
// (default dist/holepunch-godot-addon-VERSION.zip). The zip holds holepunch-VERSION/addons/
// holepunch/...: one top folder, as GitHub's archives have, which Godot's asset installer
// leaves out ("Ignore asset root"), so the addon lands at res://addons/holepunch/. Only what
// the addon folder holds goes in (git-tracked or not, but no editor import files), with a
// fixed date, in name order: the same tree gives the same bytes. Refuses to build when
// plugin.cfg's version is not package.json's (one version for both packages). Node only (no
// zip program needed), so it runs on Windows too.
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32, deflateRawSync } from 'node:zlib';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ADDON = join(ROOT, 'godot', 'addons', 'holepunch');
/** 2026-01-01 00:00 in MS-DOS date/time (the zip format's): fixed, so builds are reproducible. */
const DOS_TIME = 0;
const DOS_DATE = ((2026 - 1980) << 9) | (1 << 5) | 1;

const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
const cfg = readFileSync(join(ADDON, 'plugin.cfg'), 'utf8');
const cfgVersion = /^version="([^"]*)"/m.exec(cfg)?.[1];
if (cfgVersion !== version) {
  process.stderr.write(
    `godot/addons/holepunch/plugin.cfg has version ${cfgVersion}, package.json ${version}: make them equal\n`,
  );
  process.exit(1);
}
const out = resolve(process.argv[2] ?? join(ROOT, 'dist', `holepunch-godot-addon-${version}.zip`));

/** Every file under `dir`, sorted, without Godot's generated import files. */
function files(dir) {
  const found = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) found.push(...files(path));
    else if (!name.endsWith('.import')) found.push(path);
  }
  return found;
}

const local = [];
const central = [];
let offset = 0;
for (const path of files(ADDON)) {
  const name = `holepunch-${version}/addons/holepunch/${relative(ADDON, path).split(sep).join('/')}`;
  const data = readFileSync(path);
  const packed = deflateRawSync(data, { level: 9 });
  const nameBytes = Buffer.from(name, 'utf8');
  const crc = crc32(data);
  // Local file header (APPNOTE 4.3.7): version 2.0, UTF-8 names (bit 11), deflate.
  const head = Buffer.alloc(30);
  head.writeUInt32LE(0x04034b50, 0);
  head.writeUInt16LE(20, 4);
  head.writeUInt16LE(0x0800, 6);
  head.writeUInt16LE(8, 8);
  head.writeUInt16LE(DOS_TIME, 10);
  head.writeUInt16LE(DOS_DATE, 12);
  head.writeUInt32LE(crc, 14);
  head.writeUInt32LE(packed.length, 18);
  head.writeUInt32LE(data.length, 22);
  head.writeUInt16LE(nameBytes.length, 26);
  head.writeUInt16LE(0, 28);
  local.push(head, nameBytes, packed);
  // Central directory header (APPNOTE 4.3.12), made by Unix (3) so the mode bits hold.
  const entry = Buffer.alloc(46);
  entry.writeUInt32LE(0x02014b50, 0);
  entry.writeUInt16LE((3 << 8) | 20, 4);
  entry.writeUInt16LE(20, 6);
  entry.writeUInt16LE(0x0800, 8);
  entry.writeUInt16LE(8, 10);
  entry.writeUInt16LE(DOS_TIME, 12);
  entry.writeUInt16LE(DOS_DATE, 14);
  entry.writeUInt32LE(crc, 16);
  entry.writeUInt32LE(packed.length, 20);
  entry.writeUInt32LE(data.length, 24);
  entry.writeUInt16LE(nameBytes.length, 28);
  entry.writeUInt32LE((0o100644 << 16) >>> 0, 38);
  entry.writeUInt32LE(offset, 42);
  central.push(entry, nameBytes);
  offset += head.length + nameBytes.length + packed.length;
}
const centralBytes = Buffer.concat(central);
const end = Buffer.alloc(22);
end.writeUInt32LE(0x06054b50, 0);
end.writeUInt16LE(central.length / 2, 8);
end.writeUInt16LE(central.length / 2, 10);
end.writeUInt32LE(centralBytes.length, 12);
end.writeUInt32LE(offset, 16);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, Buffer.concat([...local, centralBytes, end]));
process.stdout.write(`${out}\n`);
