/**
 * The relay fallback of the v2 server (docs/protocol-v2.md, "Relay"): channels between two
 * members of a started session whose direct path failed. Sans-IO like the session table.
 *
 * A channel has one 8-byte id per side. A `relay_data` is accepted only from the side's own
 * endpoint (the one the session validated) and goes out to the other side, same size, with
 * the other side's id: the relay cannot be aimed at a third party or amplify anything.
 */
import { type Endpoint, sameEndpoint } from '../protocol/endpoint.js';
import { bytesKey, encodeV2, RELAY_CHANNEL_BYTES } from '../protocol/v2.js';
import { countRejection, type ServerCounters } from './counters.js';
import type { Outbox } from './handler.js';

/** A channel nobody sent anything through for this long is closed. */
export const RELAY_IDLE_MS = 60_000;

export interface RelayMember {
  readonly name: string;
  readonly endpoint: Endpoint;
}

interface Channel {
  readonly pairKey: string;
  /** Side 0 is the member whose name sorts first. */
  readonly endpoints: [Endpoint, Endpoint];
  readonly ids: [Uint8Array, Uint8Array];
  lastActive: number;
}

interface SideRef {
  readonly channel: Channel;
  readonly side: 0 | 1;
}

/** Tries at a fresh random channel id before the table counts as full (ids are 64-bit). */
const ID_TRIES = 4;

export interface RelayChannelsOptions {
  readonly outbox: Outbox;
  readonly counters: ServerCounters;
  readonly randomBytes: (bytes: number) => Uint8Array;
  readonly maxChannels: number;
}

export class RelayChannels {
  readonly #outbox: Outbox;
  readonly #counters: ServerCounters;
  readonly #randomBytes: (bytes: number) => Uint8Array;
  readonly #maxChannels: number;
  readonly #byPair = new Map<string, Channel>();
  readonly #byId = new Map<string, SideRef>();
  /** When idle channels are next swept (Infinity while there are none). */
  #sweepAt = Number.POSITIVE_INFINITY;

  constructor(options: RelayChannelsOptions) {
    this.#outbox = options.outbox;
    this.#counters = options.counters;
    this.#randomBytes = options.randomBytes;
    this.#maxChannels = options.maxChannels;
  }

  get size(): number {
    return this.#byPair.size;
  }

  /**
   * The channel between `self` and `peer` of `session` (made on the first ask, the same one
   * for both sides after), and `self`'s id in it; undefined when the table is full.
   */
  open(now: number, session: string, self: RelayMember, peer: RelayMember): Uint8Array | undefined {
    const [first, second] = self.name < peer.name ? [self, peer] : [peer, self];
    const pairKey = `${session}\u0000${first.name}\u0000${second.name}`;
    let channel = this.#byPair.get(pairKey);
    if (channel === undefined) {
      if (this.#byPair.size >= this.#maxChannels) return undefined;
      channel = this.#create(pairKey, now);
      if (channel === undefined) return undefined;
    }
    channel.lastActive = now;
    // Endpoints as the session knows them now (a member may have been re-mapped since).
    channel.endpoints[0] = first.endpoint;
    channel.endpoints[1] = second.endpoint;
    return channel.ids[self === first ? 0 : 1];
  }

  /** Forwards one `relay_data` from `from`; drops (and counts) anything else. */
  forward(now: number, from: Endpoint, channelId: Uint8Array, payload: Uint8Array): void {
    const ref = this.#byId.get(bytesKey(channelId));
    if (ref === undefined) {
      countRejection(this.#counters, 'v2_relay_unknown_channel');
      return;
    }
    const { channel, side } = ref;
    if (!sameEndpoint(channel.endpoints[side], from)) {
      countRejection(this.#counters, 'v2_relay_wrong_sender');
      return;
    }
    channel.lastActive = now;
    const other = side === 0 ? 1 : 0;
    this.#counters.datagramsRelayed++;
    this.#outbox.send(
      channel.endpoints[other],
      encodeV2({ type: 'relay_data', requestId: 0, channel: channel.ids[other], payload }),
    );
  }

  nextDeadline(): number {
    return this.#sweepAt;
  }

  handleTimeout(now: number): void {
    if (now < this.#sweepAt) return;
    for (const channel of [...this.#byPair.values()]) {
      if (now >= channel.lastActive + RELAY_IDLE_MS) this.#close(channel);
    }
    this.#sweepAt = this.#byPair.size > 0 ? now + RELAY_IDLE_MS / 2 : Number.POSITIVE_INFINITY;
  }

  clear(): void {
    this.#byPair.clear();
    this.#byId.clear();
    this.#sweepAt = Number.POSITIVE_INFINITY;
  }

  #create(pairKey: string, now: number): Channel | undefined {
    const a = this.#newId();
    const b = this.#newId();
    if (a === undefined || b === undefined || bytesKey(a) === bytesKey(b)) return undefined;
    const unset = { address: '', port: 0 };
    const channel: Channel = { pairKey, endpoints: [unset, unset], ids: [a, b], lastActive: now };
    this.#byPair.set(pairKey, channel);
    this.#byId.set(bytesKey(a), { channel, side: 0 });
    this.#byId.set(bytesKey(b), { channel, side: 1 });
    if (!Number.isFinite(this.#sweepAt)) this.#sweepAt = now + RELAY_IDLE_MS / 2;
    return channel;
  }

  #newId(): Uint8Array | undefined {
    for (let i = 0; i < ID_TRIES; i++) {
      const id = this.#randomBytes(RELAY_CHANNEL_BYTES);
      if (!this.#byId.has(bytesKey(id))) return id;
    }
    return undefined;
  }

  #close(channel: Channel): void {
    this.#byPair.delete(channel.pairKey);
    for (const id of channel.ids) this.#byId.delete(bytesKey(id));
  }
}
