/**
 * What one complete legacy lobby looks like on the wire, from the load generator's side: the
 * requests each member sends, in order, and every reply each member must receive before the
 * next request goes out. The load generator counts a reply only if it equals what is written
 * here, byte for byte, so a server that answers wrongly cannot look fast.
 */
import { encodeEchoRequest } from './echo-plan.js';

export interface LobbyStep {
  /** Index of the member whose socket sends `request`. */
  readonly from: number;
  readonly request: Buffer;
  /**
   * Per member socket, the replies it must receive for this step, in order: latin1 text for
   * the real server, a byte length for the echo reference (which sends only to `from`).
   */
  readonly expect: readonly (readonly (string | number)[])[];
  /** Total replies in `expect`. */
  readonly replies: number;
}

export interface LobbySpec {
  /** Unique per run: keys and names derive from it, so no lobby collides with another. */
  readonly id: number;
  readonly players: number;
  /** MAX in `rs:KEY:MAX`; when it equals `players` the server autostarts (sends `peers:`). */
  readonly maxPlayers: number;
  /** The address the server sees for every member (loopback). */
  readonly address: string;
  /** The source port of each member's socket; index 0 is the host. */
  readonly ports: readonly number[];
}

export function lobbyKey(id: number): string {
  return `k${id.toString(36)}`;
}

export function memberName(id: number, member: number): string {
  return `p${id.toString(36)}_${member}`;
}

export function memberNick(member: number): string {
  return `nick${member}`;
}

/** The server's expected reply to `rs` and `rc`: the source port it observed. */
function okReply(port: number): string {
  return `ok:${port}`;
}

function lobbyReply(joined: number, maxPlayers: number): string {
  const nicks: string[] = [];
  for (let i = 0; i < joined; i++) nicks.push(memberNick(i));
  return `lobby:${nicks.join(',')}:${maxPlayers}`;
}

/** `peers:` for `member`: every other member in join order, with the later revision's HOSTING. */
function peersReply(spec: LobbySpec, member: number): string {
  const entries: string[] = [];
  for (let i = 0; i < spec.players; i++) {
    if (i === member) continue;
    // HOSTING marks the member registered from the endpoint that sent `rs` (the host).
    const hosting = i === 0 ? 'True' : 'False';
    entries.push(`${memberName(spec.id, i)}:${spec.address}:${spec.ports[i]}:${hosting}`);
  }
  return `peers:${entries.join(',')}`;
}

/** The legacy lobby as the rendezvous server must answer it. */
export function serverLobbySteps(spec: LobbySpec): LobbyStep[] {
  const key = lobbyKey(spec.id);
  const steps: LobbyStep[] = [];
  const empty = (): string[][] => Array.from({ length: spec.players }, () => []);

  const rsExpect = empty();
  rsExpect[0]?.push(okReply(spec.ports[0] as number));
  steps.push({
    from: 0,
    request: Buffer.from(`rs:${key}:${spec.maxPlayers}`),
    expect: rsExpect,
    replies: 1,
  });

  for (let member = 0; member < spec.players; member++) {
    const expect = empty();
    expect[member]?.push(okReply(spec.ports[member] as number));
    if (member + 1 === spec.maxPlayers) {
      // The join that fills the lobby gets `peers:` at once, without a full `lobby:` first.
      for (let i = 0; i <= member; i++) expect[i]?.push(peersReply(spec, i));
    } else {
      const lobby = lobbyReply(member + 1, spec.maxPlayers);
      for (let i = 0; i <= member; i++) expect[i]?.push(lobby);
    }
    const request = Buffer.from(`rc:${memberName(spec.id, member)}:${key}:${memberNick(member)}`);
    steps.push({
      from: member,
      request,
      expect,
      replies: expect.reduce((n, q) => n + q.length, 0),
    });
  }
  return steps;
}

/**
 * The same lobby for the echo reference: each request keeps its length and asks for replies of
 * the same count and sizes as the server's replies to it (all sent back to the requester, as
 * the echo knows no other member; a send costs the same whichever socket it goes to).
 */
export function echoLobbySteps(spec: LobbySpec): LobbyStep[] {
  return serverLobbySteps(spec).map((step) => {
    const sizes: number[] = [];
    for (const queue of step.expect) {
      for (const reply of queue) sizes.push(Buffer.byteLength(String(reply), 'latin1'));
    }
    const expect: number[][] = Array.from({ length: step.expect.length }, () => []);
    expect[step.from] = sizes;
    return {
      from: step.from,
      request: encodeEchoRequest(step.request, sizes),
      expect,
      replies: sizes.length,
    };
  });
}
