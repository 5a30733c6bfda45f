/**
 * The timing rules of the v2 session table (docs/protocol-v2.md): how long members have to
 * validate, how long silence is tolerated, how `peers` is re-pushed and how long a started
 * session is remembered. Apart so that every module of the table reads the same numbers.
 */

/** First re-push of `peers` to a member that has not acked them; doubles each time. */
export const PEERS_RETRY_FIRST_MS = 150;
export const PEERS_MAX_TRIES = 6;
/**
 * A validated member of a waiting lobby that sent nothing for this long is dropped (the
 * others get the new lobby); a silent host closes the lobby with `host_left`. Clients send a
 * keepalive every 5 s, so this is three missed keepalives: a crashed or unplugged player
 * leaves the lobby within seconds instead of holding its slot until the session expires.
 */
export const MEMBER_SILENCE_MS = 15_000;
/**
 * A member sends a keepalive this often: a third of the session's silence limit (5 s for the
 * default 15 s), so one lost keepalive, even two, does not drop it. Told to revision ≥ 1
 * members in `registered`; revision 0 clients keep their fixed 5 s.
 */
export const KEEPALIVES_PER_SILENCE = 3;
/**
 * A member that has not acked its peers this long after the start (after 6 pushes and its
 * own keepalive) is reported to the others as gone (`peer_left`, why `silent`), so their
 * punch failure names the cause. Shorter than the clients' 8 s punch budget.
 */
export const PEERS_ACK_WITHIN_MS = 6_000;
/** A started session is forgotten once all members acked, at the latest after this. */
export const STARTED_LINGER_MS = 15_000;
/**
 * A late `join` for a session that started this recently is told `session_full` (it started
 * without you) instead of `session_not_found`, which a joiner takes for a host that has not
 * registered yet and waits for.
 */
export const STARTED_NAME_MEMORY_MS = 60_000;
/**
 * Members of a started session may ask for relay channels this long after the start (a
 * client asks when its punch budget, 8 s from the peers, runs out), even after the session
 * itself is forgotten and its name taken by the next game.
 */
export const RELAY_ASK_WINDOW_MS = 15_000;
/**
 * A new member has this long to prove that it receives at the address it registered from,
 * by sending `keepalive` or `start` with the token that was sent only there. Until then it
 * gets nothing but `registered`, is not in the lobby and is dropped at the start, so a
 * `host` or `join` with a forged source address cannot aim the server's lobby and peer
 * pushes at a third party (reflection). Room for ~20 tries of the client at heavy loss.
 */
export const VALIDATE_WITHIN_MS = 10_000;
