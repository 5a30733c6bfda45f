// PLACEHOLDER owned by the v2/client engineer: replaced by the real v2 session table.
import type { Endpoint } from '../protocol/endpoint.js';
import { countRejection, type ServerCounters } from './counters.js';
import type { Outbox, ProtocolHandler } from './handler.js';

export interface V2SessionsOptions {
  readonly outbox: Outbox;
  readonly counters: ServerCounters;
  /** Fills `bytes` with cryptographically random bytes (tokens). Injected for determinism. */
  readonly randomBytes: (bytes: number) => Uint8Array;
  readonly sessionTtlMs: number;
  readonly maxSessions: number;
  readonly maxPlayersCap: number;
  readonly autostart: boolean;
}

export class V2Sessions implements ProtocolHandler {
  readonly #counters: ServerCounters;

  constructor(options: V2SessionsOptions) {
    this.#counters = options.counters;
  }

  handle(_now: number, _from: Endpoint, _data: Uint8Array): void {
    countRejection(this.#counters, 'v2_unsupported');
  }

  nextDeadline(): number {
    return Number.POSITIVE_INFINITY;
  }

  handleTimeout(_now: number): void {}

  shutdown(_now: number, _reason: string): void {}

  get sessionCount(): number {
    return 0;
  }
}
