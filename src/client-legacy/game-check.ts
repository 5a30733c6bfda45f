import type { RemoteInfo, Socket } from 'node:dgram';
import type { Endpoint } from '../protocol/index.js';

/** Game datagrams each side sends per peer after punching, one per GAME_PING_INTERVAL_MS. */
export const GAME_PINGS = 10;
export const GAME_PING_INTERVAL_MS = 100;
/** After its last ping a side keeps answering this long: the peer may have punched later. */
export const GAME_LINGER_MS = 1_000;

export interface GameCheckResult {
  readonly peer: string;
  readonly rttMs: number | null;
  readonly sent: number;
  readonly received: number;
}

/**
 * Stands in for the game after `hole_punched`: on the punched socket, pings every peer and
 * answers their pings, so both directions of the path are exercised. Text datagrams
 * (`game:ping:SEQ` / `game:pong:SEQ`) that the legacy handshake ignores.
 */
export async function exchangeGameDatagrams(
  socket: Socket,
  peers: readonly (Endpoint & { readonly name: string })[],
): Promise<GameCheckResult[]> {
  const sentAt = new Map<string, number>();
  const stats = peers.map((p) => ({
    peer: p.name,
    key: `${p.address}#${p.port}`,
    sent: 0,
    received: 0,
    rttTotal: 0,
  }));
  const onMessage = (data: Buffer, from: RemoteInfo) => {
    const text = data.toString('utf8');
    if (text.startsWith('game:ping:')) {
      socket.send(`game:pong:${text.slice('game:ping:'.length)}`, from.port, from.address);
      return;
    }
    if (!text.startsWith('game:pong:')) return;
    const key = text.slice('game:pong:'.length);
    const at = sentAt.get(key);
    if (at === undefined) return;
    sentAt.delete(key);
    const index = Number(key.split('/')[0]);
    const s = stats[index];
    if (s === undefined) return;
    s.received += 1;
    s.rttTotal += performance.now() - at;
  };
  socket.on('message', onMessage);
  try {
    for (let seq = 0; seq < GAME_PINGS; seq++) {
      peers.forEach((peer, index) => {
        const key = `${index}/${seq}`;
        sentAt.set(key, performance.now());
        const s = stats[index];
        if (s !== undefined) s.sent += 1;
        socket.send(`game:ping:${key}`, peer.port, peer.address);
      });
      await new Promise((resolve) => setTimeout(resolve, GAME_PING_INTERVAL_MS));
    }
    await new Promise((resolve) => setTimeout(resolve, GAME_LINGER_MS));
  } finally {
    socket.off('message', onMessage);
  }
  return stats.map((s) => ({
    peer: s.peer,
    rttMs: s.received > 0 ? Math.round((s.rttTotal / s.received) * 100) / 100 : null,
    sent: s.sent,
    received: s.received,
  }));
}
