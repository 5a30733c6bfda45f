/**
 * One error type for the whole kit. The `code` is stable: it is what goes on the
 * v2 wire, what `failed` events carry and what the README documents.
 */
export const ERROR_CODES = [
  /** A datagram or argument that does not parse or breaks a limit. */
  'bad_request',
  /** A v2 datagram with a version this side does not speak. */
  'unsupported_version',
  /** Registering a session whose name is taken. */
  'session_exists',
  /** Joining or addressing a session that does not exist (or expired). */
  'session_not_found',
  /** Joining a session that already has its maximum of members. */
  'session_full',
  /** Registering a member name that another member of the session uses. */
  'name_taken',
  /** A request whose token does not grant it (not the member, not the host). */
  'not_authorized',
  /**
   * The session ended: closed by the host or expired (and, to a revision-0 client, the server
   * shut down: see `server_shutdown`).
   */
  'session_closed',
  /** The host left the lobby (`leave`) or stopped sending keepalives: the lobby is closed. */
  'host_left',
  /** Every peer that could not be reached left the session or stopped answering the server. */
  'peer_left',
  /** No answer within the time allowed. */
  'timeout',
  /** The server's name does not resolve, or the server never answered at all. */
  'server_unreachable',
  /** The local UDP socket could not be bound or used (e.g. the port is taken). */
  'socket_error',
  /** Peers were exchanged but no direct path was confirmed in time. */
  'punch_failed',
  /** The caller aborted (AbortSignal) or closed the client. */
  'aborted',
  /** The NAT lab cannot run here: not root, or `ip`/`iptables` missing, or namespaces fail. */
  'lab_unavailable',
  /** A NAT lab router did not behave as its NAT type says (found by the probe). */
  'nat_misbehaved',
  /** The server holds its maximum number of sessions (v2 `host` refused). */
  'server_full',
  /** The server does not relay (`--no-relay`) or holds its maximum of relay channels. */
  'relay_unavailable',
  /**
   * The server ended the session because it stops or drains (protocol v2 revision 1; a
   * revision-0 client hears `session_closed`): not the host's doing, so a game may retry on
   * another server, or the same one once it is back.
   */
  'server_shutdown',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

const CODE_SET: ReadonlySet<string> = new Set(ERROR_CODES);

export function isErrorCode(value: string): value is ErrorCode {
  return CODE_SET.has(value);
}

export class HolePunchError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HolePunchError';
    this.code = code;
  }
}
