/**
 * The client's half of the original HolePunch text protocol (seed PROTOCOL.md; the server's
 * half is legacy.ts): what a plugin sends to the server, the server replies it reads, and the
 * peer handshake greet/confirm/go. Text, `:`-separated, nothing escaped. Decoders never
 * throw: anything unexpected is `undefined`, and the client ignores it like the original did.
 */

import { encodeLegacyText } from './legacy.js';

/**
 * A `peers:` entry as a client reads it. Unlike the server's `LegacyPeerEntry`, HOSTING may be
 * missing: servers of the earlier revision send three fields.
 */
export interface LegacyDecodedPeerEntry {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  /** The later revision's fourth field; undefined from servers of the earlier revision. */
  readonly hosting: boolean | undefined;
}

export type LegacyServerMessage =
  | { readonly type: 'ok'; readonly port: number }
  | { readonly type: 'lobby'; readonly nicknames: readonly string[]; readonly maxPlayers: number }
  | { readonly type: 'peers'; readonly peers: readonly LegacyDecodedPeerEntry[] }
  | { readonly type: 'close'; readonly reason: string };

export type LegacyPeerMessage =
  /** `greet:NAME:OWNPORT:PEERPORT`: the sender, its public port, the port it sent to. */
  | {
      readonly type: 'greet';
      readonly name: string;
      readonly ownPort: number;
      readonly peerPort: number;
    }
  /** `confirm:OWNPORT:NAME:ISHOST:PEERPORT` */
  | {
      readonly type: 'confirm';
      readonly ownPort: number;
      readonly name: string;
      readonly isHost: boolean;
      readonly peerPort: number;
    }
  /** `go:NAME` */
  | { readonly type: 'go'; readonly name: string };

function port(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,5}$/.test(text)) return undefined;
  const value = Number(text);
  return value >= 1 && value <= 65_535 ? value : undefined;
}

const decoder = new TextDecoder('utf-8', { fatal: false });

export function decodeLegacyServerMessage(data: Uint8Array): LegacyServerMessage | undefined {
  const text = decoder.decode(data);
  const fields = text.split(':');
  switch (fields[0]) {
    case 'ok': {
      const p = port(fields[1]);
      return p === undefined ? undefined : { type: 'ok', port: p };
    }
    case 'lobby': {
      const max = Number(fields[2]);
      if (fields.length !== 3 || !Number.isInteger(max)) return undefined;
      const list = fields[1] ?? '';
      return { type: 'lobby', nicknames: list === '' ? [] : list.split(','), maxPlayers: max };
    }
    case 'peers': {
      const peers: LegacyDecodedPeerEntry[] = [];
      const body = text.slice('peers:'.length);
      for (const entry of body === '' ? [] : body.split(',')) {
        const [name, address, portText, hosting] = entry.split(':');
        const p = port(portText);
        if (name === undefined || address === undefined || p === undefined) return undefined;
        peers.push({
          name,
          address,
          port: p,
          hosting: hosting === undefined ? undefined : hosting === 'True',
        });
      }
      return { type: 'peers', peers };
    }
    case 'close':
      return { type: 'close', reason: text.slice('close:'.length) };
    default:
      return undefined;
  }
}

export function decodeLegacyPeerMessage(data: Uint8Array): LegacyPeerMessage | undefined {
  const fields = decoder.decode(data).split(':');
  switch (fields[0]) {
    case 'greet': {
      const own = port(fields[2]);
      const peer = port(fields[3]);
      if (fields[1] === undefined || own === undefined || peer === undefined) return undefined;
      return { type: 'greet', name: fields[1], ownPort: own, peerPort: peer };
    }
    case 'confirm': {
      const own = port(fields[1]);
      const peer = port(fields[4]);
      if (fields[2] === undefined || own === undefined || peer === undefined) return undefined;
      return {
        type: 'confirm',
        ownPort: own,
        name: fields[2],
        isHost: fields[3] === 'True',
        peerPort: peer,
      };
    }
    case 'go':
      return fields[1] === undefined ? undefined : { type: 'go', name: fields[1] };
    default:
      return undefined;
  }
}

/** What a plugin sends: to the server (`rs` .. `goodbye`) and to its peers (greet/confirm/go). */
export const encodeLegacy = {
  registerSession: (key: string, maxPlayers: number) => encodeLegacyText(`rs:${key}:${maxPlayers}`),
  /** The lobby revision (`godot3-lobby`): NICKNAME is shown in `lobby:`. */
  registerClient: (name: string, key: string, nickname: string) =>
    encodeLegacyText(`rc:${name}:${key}:${nickname}`),
  /** The master revisions (`godot3-master`, `godot4-master`) send three fields, no nickname. */
  registerClientMaster: (name: string, key: string) => encodeLegacyText(`rc:${name}:${key}`),
  exchangePeers: (key: string) => encodeLegacyText(`ep:${key}`),
  checkOut: (name: string) => encodeLegacyText(`cc:${name}`),
  closeSession: (key: string, reason: string) => encodeLegacyText(`cs:${key}:${reason}`),
  greet: (name: string, ownPort: number, peerPort: number) =>
    encodeLegacyText(`greet:${name}:${ownPort}:${peerPort}`),
  // Godot's str(bool) is "True"/"False"; the original compares the text.
  confirm: (ownPort: number, name: string, isHost: boolean, peerPort: number) =>
    encodeLegacyText(`confirm:${ownPort}:${name}:${isHost ? 'True' : 'False'}:${peerPort}`),
  go: (name: string) => encodeLegacyText(`go:${name}`),
  /** Sent to the server by `start_peer_contact()` on `peers:`; every server ignores it. */
  goodbye: () => encodeLegacyText('goodbye'),
};

/**
 * Which released plugin (seed `original/`) the client behaves like. They differ on the wire
 * (`rc` fields), in which server messages they read, and in how they fail:
 * - `godot3-lobby` (76c604a): `rc:NAME:KEY:NICKNAME`; reads `lobby:` and `close:`; has
 *   `client_disconnect()`/`close_session()` (`cs` from the host, `cc` otherwise); reads every
 *   `peers:` entry; an empty `peers:` fails with `No peers found.` (and sends `cc`).
 * - `godot3-master` (8a7476f): `rc:NAME:KEY`; ignores `lobby:` and `close:`; no `cs`; reads only
 *   the first `peers:` entry; an empty `peers:` is ignored and the plugin waits forever.
 * - `godot4-master` (bdd83f5): as `godot3-master`, but Godot 4's `String.right(6)` is the LAST 6
 *   characters, so it can never parse `peers:` (script error at holepunch_node.gd:94).
 */
export type LegacyRevision = 'godot3-lobby' | 'godot3-master' | 'godot4-master';

/**
 * A `peers:` entry as a plugin reads it: NAME, ADDRESS and the leading number of PORT. The
 * plugins never read HOSTING.
 */
export interface LegacyPluginPeer {
  readonly name: string;
  readonly address: string;
  readonly port: number;
}

/**
 * A server line as one plugin revision reads it (`readPluginServerLine`), quirks included.
 * Unlike `decodeLegacyServerMessage`, which says what the server meant, this says what the
 * plugin saw.
 */
export type LegacyPluginServerLine =
  /**
   * Lobby revision, `lobby:LIST:MAX`: `update_lobby(m[1].split(","), m[2])`, extra fields
   * ignored; `maxPlayers` is `Number(m[2])`, so NaN when it is missing or not a number.
   */
  | { readonly type: 'lobby'; readonly nicknames: readonly string[]; readonly maxPlayers: number }
  /** Lobby revision, `close:REASON`: `m[1]`, so the reason is cut at its first `:`. */
  | { readonly type: 'close'; readonly reason: string }
  /**
   * `ok:PORT` (the master revisions test only `begins_with("ok")`): `port` undefined when the
   * line passed the plugin's prefix test but carries no valid port.
   */
  | { readonly type: 'ok'; readonly port: number | undefined }
  /**
   * `peers:...` (the master revisions test only `begins_with("peers")`). `body` is what
   * `right(6)` left: from index 6 in Godot 3, the last 6 characters in Godot 4.
   */
  | { readonly type: 'peers'; readonly body: string; readonly entries: LegacyPluginPeers }
  /** Anything this revision does not read. */
  | { readonly type: 'other' };

export type LegacyPluginPeers =
  /** What the plugin read; empty when `body` has at most 2 characters (no peers). */
  | { readonly ok: true; readonly peers: readonly LegacyPluginPeer[] }
  /** An entry the plugin cannot parse (a script error): `entry` is the one it choked on. */
  | { readonly ok: false; readonly entry: string };

/** How `revision` reads the server line `data`; never throws. */
export function readPluginServerLine(
  revision: LegacyRevision,
  data: Uint8Array,
): LegacyPluginServerLine {
  const text = decoder.decode(data);
  const lobbyRevision = revision === 'godot3-lobby';
  if (lobbyRevision && text.startsWith('lobby:')) {
    const m = text.split(':');
    const list = m[1] ?? '';
    return {
      type: 'lobby',
      nicknames: list === '' ? [] : list.split(','),
      maxPlayers: Number(m[2]),
    };
  }
  if (lobbyRevision && text.startsWith('close:')) {
    return { type: 'close', reason: text.split(':')[1] ?? '' };
  }
  if (text.startsWith(lobbyRevision ? 'ok:' : 'ok')) {
    const msg = decodeLegacyServerMessage(data);
    return { type: 'ok', port: msg?.type === 'ok' ? msg.port : undefined };
  }
  if (text.startsWith(lobbyRevision ? 'peers:' : 'peers')) {
    const body = revision === 'godot4-master' ? text.slice(-6) : text.slice(6);
    return { type: 'peers', body, entries: readPluginPeers(revision, body) };
  }
  return { type: 'other' };
}

/**
 * The plugins' parse of what `right(6)` left. Lobby: every `,`-separated entry; master:
 * `split(":")` of the whole body, so only the first entry counts and `int()` of its
 * "PORT,NAME2..." reads the leading digits. A missing field is a script error.
 */
function readPluginPeers(revision: LegacyRevision, body: string): LegacyPluginPeers {
  if (body.length <= 2) return { ok: true, peers: [] };
  const entries = revision === 'godot3-lobby' ? body.split(',') : [body];
  const peers: LegacyPluginPeer[] = [];
  for (const entry of entries) {
    const [name, address, portText] = entry.split(':');
    const port = Number(portText?.split(',')[0]);
    if (
      name === undefined ||
      address === undefined ||
      portText === undefined ||
      !Number.isInteger(port) ||
      port < 1 ||
      port > 65_535
    ) {
      return { ok: false, entry };
    }
    peers.push({ name, address, port });
  }
  return { ok: true, peers };
}
