/**
 * NAT diagnosis on the server (docs/protocol-v2.md, "NAT diagnosis"): a `probe` is answered
 * with the source address the server saw, from the socket its flags ask for, as a STUN server
 * with RFC 5780's CHANGE-REQUEST does. Stateless and sans-IO: nothing is kept, and a reply is
 * at most 105 bytes for a 64-byte probe.
 */
import { type Endpoint, encodeV2, unmappedAddress, type V2Message } from '../protocol/index.js';
import { countRejection, type ServerCounters } from './counters.js';
import type { Outbox } from './handler.js';

/**
 * One of the server's sockets: bit 0 set = on the alternate address, bit 1 set = on the
 * alternate port. 0 is the main socket; the others exist only with `--alt-address` and/or
 * `--alt-port`.
 */
export type ServerSocket = 0 | 1 | 2 | 3;
export const ALT_ADDRESS_BIT = 1;
export const ALT_PORT_BIT = 2;

export interface ProbeResponderOptions {
  readonly outbox: Outbox;
  readonly counters: ServerCounters;
  /** The server's second address, or '' without one. */
  readonly altAddress: string;
  /** The server's second port, or 0 without one. */
  readonly altPort: number;
}

export class ProbeResponder {
  readonly #o: ProbeResponderOptions;

  constructor(options: ProbeResponderOptions) {
    this.#o = options;
  }

  handle(via: ServerSocket, from: Endpoint, msg: Extract<V2Message, { type: 'probe' }>): void {
    if (
      (msg.changeAddress && this.#o.altAddress === '') ||
      (msg.changePort && this.#o.altPort === 0)
    ) {
      // The client asked for a socket this server does not have: no answer, as from a filter.
      countRejection(this.#o.counters, 'probe_unavailable');
      return;
    }
    let reply = via as number;
    if (msg.changeAddress) reply ^= ALT_ADDRESS_BIT;
    if (msg.changePort) reply ^= ALT_PORT_BIT;
    const observed = { address: unmappedAddress(from.address), port: from.port };
    const bytes = encodeV2({
      type: 'probe_reply',
      requestId: msg.requestId,
      observed,
      altAddress: this.#o.altAddress,
      altPort: this.#o.altPort,
    });
    this.#o.outbox.send(from, bytes, reply as ServerSocket);
  }
}
