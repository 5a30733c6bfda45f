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
