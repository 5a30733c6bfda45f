/**
 * Rebinding a v2 member whose NAT re-mapped it: a request with its token from another
 * address gets a fresh token there, and the member moves once that token comes back from
 * it. Apart because it is what keeps a forged source address from taking a member over.
 */
import { type Endpoint, sameEndpoint, TOKEN_BYTES } from '../protocol/index.js';
import { sendRegistered } from './v2-replies.js';
import { type Member, type Session, sameToken } from './v2-session-records.js';
import type { V2Table } from './v2-session-table.js';

/**
 * The member whose token this is. A rebind token is good only from the address it was
 * sent to, and moves the member there: that address has shown that it receives.
 */
export function memberByToken(
  session: Session,
  token: Uint8Array,
  from: Endpoint,
): Member | undefined {
  for (const m of session.members) {
    if (sameToken(m.token, token)) return m;
    const rebind = m.rebind;
    if (rebind === undefined || !sameToken(rebind.token, token)) continue;
    if (!sameEndpoint(rebind.endpoint, from)) return undefined;
    m.endpoint = rebind.endpoint;
    m.peerEntry = undefined;
    m.token = rebind.token;
    m.rebind = undefined;
    return m;
  }
  return undefined;
}

/**
 * A token holder asks from an address that is not the member's. It may be the member
 * after its NAT re-mapped it, or anyone who knows the token forging a source address: so
 * the new address gets only a fresh token (a reply no larger than the request), and
 * becomes the member's when that token comes back from it.
 */
export function sendRebind(
  t: V2Table,
  from: Endpoint,
  requestId: number,
  session: Session,
  member: Member,
): void {
  const token = t.randomBytes(TOKEN_BYTES);
  member.rebind = { endpoint: from, token };
  sendRegistered(t, from, requestId, session, member, token);
}
