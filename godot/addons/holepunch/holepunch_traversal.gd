class_name HolePunchTraversal
extends RefCounted
## The protocol state machine of one v2 traversal (docs/protocol-v2.md, sections 4-6): from
## [code]host[/code]/[code]join[/code] through the lobby to confirmed peers. It never reads a
## clock or touches a socket: its owner (the [HolePunch] node) passes the time in ms, hands
## it every datagram, and sends what it gives to [member send]. A port of the TypeScript core
## (src/client/traversal.ts, src/client/punch.ts), the transparent relay included: a peer not
## confirmed directly [constant RELAY_DELAY_MS] after the peer list gets a relay allocation
## asked for while the punch goes on; our bind to it is sent from the same socket (so the
## game's transport later uses the same NAT mapping), and a punch answered through it confirms
## the peer with path "relay" at the server's address and the relay port.
##
## With [code]classify_nat[/code] it measures its NAT's mapping class before registering (two
## [code]probe[/code]s, to the server's main and alternate ports), sends it in
## [code]host[/code]/[code]join[/code], and picks a strategy per peer from both classes
## ([method peer_strategy]): relay at once, birthday probing (the hard side punches from
## [constant BIRTHDAY_SOCKETS] extra sockets, asked of its owner through [member open_socket];
## the winner is [member game_socket]), or a port sweep against a sequential NAT.
##
## Events go to [member on_event] as Dictionaries with a [code]type[/code]:
## [code]registered[/code] (observed), [code]lobby[/code] (nicknames, max_players),
## [code]peers[/code] (peers), [code]punched[/code] (peers, failed, elapsed_ms, punch_ms),
## [code]path_changed[/code] (peer, previous: a relayed peer got a direct path after
## [code]punched[/code]), [code]failed[/code] (code, message), [code]goodbye[/code] (kind, ok).
## An open session (revision 1, docs/protocol-v2.md section 4, "Open sessions") goes on after
## [code]punched[/code]: [code]late_peers[/code] (peers: new members, or members back under
## their name), [code]peer_joined[/code] (peer: a late peer reached), [code]peer_failed[/code]
## (peer: with its cause), [code]peer_left[/code] (name, why: "left" or "silent") and
## [code]session_ended[/code] (code, message: the host closed it, or it ended).

## The values shared with the TypeScript client, generated from it (src/client/godot-shared.ts).
const Shared := preload("holepunch_shared.gd")
const Codec := preload("holepunch_codec.gd")

## First retransmission of an unanswered request; doubles up to [constant REQUEST_RETRY_MAX_MS].
const REQUEST_RETRY_FIRST_MS := Shared.REQUEST_RETRY_FIRST_MS
const REQUEST_RETRY_MAX_MS := Shared.REQUEST_RETRY_MAX_MS
## A server that answers nothing for this long is considered gone.
const SERVER_SILENCE_LIMIT_MS := Shared.SERVER_SILENCE_LIMIT_MS
## A join that meets session_not_found keeps trying this long (the host may start later).
const SESSION_WAIT_MS := Shared.SESSION_WAIT_MS
const SESSION_WAIT_RETRY_MS := Shared.SESSION_WAIT_RETRY_MS
## Keepalive period in a lobby (keeps the NAT mapping to the server open), unless the server's
## registered says another (revision 1: a third of the session's member silence).
const KEEPALIVE_INTERVAL_MS := Shared.KEEPALIVE_INTERVAL_MS
## A host/join is padded with zero bytes to this length: a server answers an unvalidated source
## with at most 3x what it received (docs/protocol-v2.md section 2).
const MIN_REGISTER_REQUEST_BYTES := Shared.MIN_REGISTER_REQUEST_BYTES
## A host's keep_open_ms travels in whole seconds as a u16.
const MAX_KEEP_OPEN_S := Shared.MAX_KEEP_OPEN_S
## leave/close are sent at most this many times (about 1.5 s).
const GOODBYE_MAX_TRIES := Shared.GOODBYE_MAX_TRIES
## Punch rounds: every 50 ms for 20 rounds, then slowing down to every 200 ms.
const PUNCH_INTERVAL_MS := Shared.PUNCH_INTERVAL_MS
const PUNCH_INTERVAL_MAX_MS := Shared.PUNCH_INTERVAL_MAX_MS
const PUNCH_FAST_ROUNDS := Shared.PUNCH_FAST_ROUNDS
## Port prediction joins after this many rounds, on ports +-PREDICT_PORT_RANGE.
const PREDICT_AFTER_ROUNDS := Shared.PREDICT_AFTER_ROUNDS
const PREDICT_PORT_RANGE := Shared.PREDICT_PORT_RANGE
const PUNCH_BUDGET_MS := Shared.PUNCH_BUDGET_MS
## After success keep answering peers' punches this long, so they can confirm us too.
const PUNCH_LINGER_MS := Shared.PUNCH_LINGER_MS
const MAX_REFLEXIVE_CANDIDATES := Shared.MAX_REFLEXIVE_CANDIDATES
## A peer not confirmed directly this long after the peer list gets a relay allocation asked
## for (at most half the punch budget), as the TS core does.
const RELAY_DELAY_MS := Shared.RELAY_DELAY_MS
const U32 := 0x100000000
## The socket the traversal registers and punches from; birthday sockets are 1..256.
const MAIN_SOCKET := Shared.MAIN_SOCKET

# NAT classes and the strategy from both (docs/protocol-v2.md section 6, "Strategy from both
# NAT classes", where each rule and bound is defined once; the names and values are the
# TypeScript core's, src/client/traversal.ts and src/client/punch.ts).

## Classification: each probe is re-sent this often until answered...
const CLASSIFY_RETRY_MS := Shared.CLASSIFY_RETRY_MS
## ...for at most this long from the start (then the class is "unknown")...
const CLASSIFY_WITHIN_MS := Shared.CLASSIFY_WITHIN_MS
## ...and at most this many probes in all (64 bytes each).
const CLASSIFY_MAX_PROBES := Shared.CLASSIFY_MAX_PROBES
## Between the two: the wait for the server's unasked answer from its alternate port to reach
## our NAT first, a retry interval and this many round trips of the main probe...
const COLLIDE_WAIT_RTTS := Shared.COLLIDE_WAIT_RTTS
## ...and this long at most...
const COLLIDE_WAIT_MAX_MS := Shared.COLLIDE_WAIT_MAX_MS
## ...after this many copies of that probe, sent at once.
const COLLIDE_PROBES := Shared.COLLIDE_PROBES
## Against an edm-sequential peer the easy side sweeps this many ports on either side of the
## peer's public port from the first round...
const SWEEP_PORT_RANGE := Shared.SWEEP_PORT_RANGE
## ...on every this-many-th punch round.
const SWEEP_EVERY_ROUNDS := Shared.SWEEP_EVERY_ROUNDS
## Two public ports at most this far apart are "edm-sequential" (the sweep's range).
const SEQUENTIAL_PORT_DELTA := Shared.SEQUENTIAL_PORT_DELTA
## A sequential pair asks the relay this long after the peer list (not RELAY_DELAY_MS).
const SEQUENTIAL_RELAY_DELAY_MS := Shared.SEQUENTIAL_RELAY_DELAY_MS
## A birthday pair asks the relay this long after the peer list: probing needs about a second.
const BIRTHDAY_RELAY_DELAY_MS := Shared.BIRTHDAY_RELAY_DELAY_MS
## Birthday probing, hard side (edm-random): this many extra sockets (ids 1..256, any port),
## each punching the easy side's public endpoint...
const BIRTHDAY_SOCKETS := Shared.BIRTHDAY_SOCKETS
## ...this many times...
const BIRTHDAY_HARD_ROUNDS := Shared.BIRTHDAY_HARD_ROUNDS
## ...this far apart.
const BIRTHDAY_HARD_INTERVAL_MS := Shared.BIRTHDAY_HARD_INTERVAL_MS
## Easy side (eim): at most this many probes to random ports (1024-65535) of the hard side...
const BIRTHDAY_PROBE_BUDGET := Shared.BIRTHDAY_PROBE_BUDGET
## ...at this rate at most (probes per second)...
const BIRTHDAY_PROBE_RATE := Shared.BIRTHDAY_PROBE_RATE
## ...in batches this often.
const BIRTHDAY_TICK_MS := Shared.BIRTHDAY_TICK_MS
## The candidate byte of the easy side's birthday probes: never a real index (at most 254).
const BIRTHDAY_CANDIDATE := Shared.BIRTHDAY_CANDIDATE

## [code]func(address: String, port: int, data: PackedByteArray)[/code].
var send: Callable
## [code]func(socket: int, address: String, port: int, data: PackedByteArray)[/code]: sends
## from birthday socket [param socket] (1..[constant BIRTHDAY_SOCKETS]).
var send_from: Callable
## [code]func(socket: int) -> bool[/code]: binds birthday socket [param socket] on any free
## port; false when it cannot (it is left out).
var open_socket: Callable
## [code]func(socket: int)[/code]: closes birthday socket [param socket].
var close_socket: Callable
## [code]func(event: Dictionary)[/code].
var on_event: Callable

var state := "idle"
## Our public endpoint as the server saw it (empty until registered).
var observed := {}
## lobby, closed and peer_left from the server's address without our token's tag: ignored.
var forged_pushes := 0
## Our NAT class as measured while registering ("unknown" without classify_nat): one of
## [code]Codec.NAT_CLASSES[/code].
var nat := "unknown"
## The socket the game's traffic must use: [constant MAIN_SOCKET], or after a birthday win on
## the hard side the birthday socket that reached the peer (kept open until the hand-over).
var game_socket := MAIN_SOCKET
## The strategy chosen for each peer (by name): see [method peer_strategy].
var strategies := {}
## The server's alternate port as its probe_reply named it (0: none or not asked).
var server_alt_port := 0

var _o: Dictionary
var _next_id := 1
## The server is of revision 1 or later: relay binds are signed (a revision-0 server gets the
## bare bind secret it knows).
var _signed_binds := false
var _pending := {}
var _token := PackedByteArray()
## Our token before a rebind, for pushes the server sent before it moved us.
var _previous_token := PackedByteArray()
var _started_at := 0
var _deadline := INF
var _last_heard_at := 0
var _heard_from_server := false
var _lobby_version := 0
var _keepalive_at := INF
var _start_wanted := false
var _peer_parts := {}
var _session_wait_until := 0
var _lobby_size := ""
var _punch: _Punch = null
## Our relay allocations by peer name: {phase: asking/binding/bound, port, id, bind_token,
## next_bind_at, bind_interval}.
var _relays := {}
## When the peers not confirmed directly get a relay asked for.
var _relay_at: float = INF
## Peers the relay could not be had for, with the server's word.
var _relay_failures := {}
## Classification under way: {until, next_at, sent, id (the current probe's), port (the
## server port it goes to), main_port (-1 until the main port answered)}; empty otherwise.
var _classify := {}
## Our birthday sockets (hard side) neither kept nor closed yet.
var _birthday_sockets: Array[int] = []
## Once the punch settled: when the birthday sockets the peer has not reached by then close
## (the end of the punch's linger); INF otherwise.
var _birthday_close_at: float = INF
## How often to keepalive: the server says (revision 1), else [constant KEEPALIVE_INTERVAL_MS].
var _keepalive_ms := KEEPALIVE_INTERVAL_MS
## The version of the newest complete peer list, and of the parts being assembled.
var _peers_version := 0
var _parts_version := 0
## The session takes late joiners until then (from the peers' openS): keep it alive.
var _open_until: float = -INF
## The members present now, by name (an open session's list changes).
var _peers_by_name := {}
## Punches towards late peers, newest last: {attempt: _Punch, relay_at, reported}.
var _late: Array[Dictionary] = []
## The server answered our join with session_not_found: a timeout says so.
var _session_missing := false


## [param options]: server_address, server_port, session, is_host, name, nickname,
## max_players, local_candidates (Array of endpoints), timeout_ms (0: none),
## server_timeout_ms (default [constant SERVER_SILENCE_LIMIT_MS]: fail when the server is
## silent this long),
## punch_budget_ms, require_all_peers, require_host (a joiner fails unless it reached the
## host, whom the game's transport needs), relay (default true: reach peers without a direct
## path through the server's relay), relay_delay_ms (default [constant RELAY_DELAY_MS]),
## classify_nat (default false: measure our NAT class before registering), nat_strategy
## (default true: choose the strategy per peer from both NAT classes), keep_open_ms (host:
## keep the session open this long after the start for late joiners and rejoins; default 0),
## member_silence_ms (host: a member silent this long leaves; 0, the default, is the server's
## 15000, else 6000..60000), session_wait_ms (joiner: how long a join to a missing session is
## retried; default [constant SESSION_WAIT_MS], 0 fails at the first session_not_found).
func _init(options: Dictionary) -> void:
	_o = options
	var rng := RandomNumberGenerator.new()
	rng.randomize()
	# Random start so that a restarted client's ids do not collide with its old ones.
	_next_id = 1 + rng.randi_range(0, 0x3fffffff - 1)


## Why the traversal's input is refused ("" when it is fine), as the TS client checks it.
static func check_input(session: String, name: String, nickname: String,
		max_players: int, keep_open_ms: int = 0, member_silence_ms: int = 0) -> String:
	if not Codec.is_valid_field(session, Codec.MAX_SESSION_BYTES):
		return "session must be 1..%d UTF-8 bytes" % Codec.MAX_SESSION_BYTES
	if not Codec.is_valid_field(name, Codec.MAX_NAME_BYTES):
		return "name must be 1..%d UTF-8 bytes" % Codec.MAX_NAME_BYTES
	if not Codec.is_valid_field(nickname, Codec.MAX_NICKNAME_BYTES, true):
		return "nickname must be at most %d bytes" % Codec.MAX_NICKNAME_BYTES
	if max_players < Codec.MIN_PLAYERS or max_players > Codec.MAX_PLAYERS_WIRE:
		return "max players must be %d..%d" % [Codec.MIN_PLAYERS, Codec.MAX_PLAYERS_WIRE]
	if keep_open_ms < 0 or keep_open_ms > MAX_KEEP_OPEN_S * 1000:
		return "keep_open_ms must be 0..%d" % (MAX_KEEP_OPEN_S * 1000)
	if member_silence_ms != 0 and (member_silence_ms < Codec.MIN_SILENCE_S * 1000
			or member_silence_ms > Codec.MAX_SILENCE_S * 1000):
		return "member_silence_ms must be %d..%d" % [Codec.MIN_SILENCE_S * 1000,
				Codec.MAX_SILENCE_S * 1000]
	return ""


## The NAT class from our public ports towards the server's main and alternate port.
static func nat_class_of(main_port: int, alt_port: int) -> String:
	if main_port == alt_port:
		return "eim"
	return "edm-sequential" if absi(main_port - alt_port) <= SEQUENTIAL_PORT_DELTA \
			else "edm-random"


## What to do with one peer, from both NAT classes (ours first) and the number of peers:
## "relay" (ask the relay at once, and punch all the same), "birthday-easy" /
## "birthday-hard" (eim or unknown against edm-random, two players), "sequential-easy" (sweep) /
## "sequential-hard" (predict nothing), or "punch" (everything else).
static func peer_strategy(own: String, peer: String, peer_count: int) -> String:
	# The TypeScript client's peerStrategy for every pair, generated (the rule tells one peer
	# from several, so any count above 1 reads as 2).
	return Shared.STRATEGY["%s/%s/%d" % [own, peer, 1 if peer_count == 1 else 2]]


func start(now: int) -> void:
	if state != "idle":
		return
	state = "registering"
	_started_at = now
	_last_heard_at = now
	_session_wait_until = now + int(_o.get("session_wait_ms", SESSION_WAIT_MS))
	if int(_o.get("timeout_ms", 0)) > 0:
		_deadline = now + int(_o.timeout_ms)
	if bool(_o.get("classify_nat", false)):
		_classify = {"until": now + CLASSIFY_WITHIN_MS, "next_at": now, "sent": 0, "id": _id(),
				"port": int(_o.server_port), "main_port": -1, "sent_at": now}
		_classify_tick(now)
		return
	_register(now)


func _register(now: int) -> void:
	var id := _id()
	var msg := {
		"type": "host" if _o.is_host else "join",
		"requestId": id,
		"session": _o.session,
		"name": _o.name,
		"nickname": _o.nickname,
		"candidates": _o.get("local_candidates", []),
		"maxPlayers": int(_o.get("max_players", 2)),
		"nat": nat,
		"revision": Codec.REVISION,
	}
	if _o.is_host:
		msg.keepOpenS = roundi(int(_o.get("keep_open_ms", 0)) / 1000.0)
		msg.silenceS = roundi(int(_o.get("member_silence_ms", 0)) / 1000.0)
	var bytes := Codec.encode(msg)
	# Padded: the server's registered may be no larger than 3x the request.
	if not bytes.is_empty() and bytes.size() < MIN_REGISTER_REQUEST_BYTES:
		bytes.resize(MIN_REGISTER_REQUEST_BYTES)
	_request(now, "register", id, bytes)


## Classification: (re)sends the current probe, or gives up and registers.
func _classify_tick(now: int) -> void:
	if _classify.is_empty() or now < _classify.next_at:
		return
	if now >= _classify.until or _classify.sent >= CLASSIFY_MAX_PROBES:
		_classified(now, "unknown")
		return
	_classify.sent += 1
	_classify.next_at = now + CLASSIFY_RETRY_MS
	_classify.sent_at = now
	send.call(_o.server_address, _classify.port, Codec.encode({"type": "probe",
			"requestId": _classify.id, "changeAddress": false, "changePort": false}))


## A probe_reply from the server's main or alternate port, for our current probe.
func _on_probe_reply(now: int, address: String, port: int, msg: Dictionary) -> void:
	if _classify.is_empty() or msg.requestId != _classify.id \
			or address != _o.server_address or port != _classify.port:
		return
	if _classify.main_port < 0:
		_classify.main_port = msg.observed.port
		server_alt_port = msg.altPort
		if msg.altPort == 0 or msg.altPort == int(_o.server_port):
			_classified(now, "unknown")
			return
		# A NAT that lets unsolicited datagrams in to its own address moves a host to another
		# public port when the host then sends to where they came from (RFC 4787 section 4.1),
		# and so does it to a peer whose punch arrives first: have the server answer from its
		# alternate port unasked, give that answer a round trip to arrive, then probe the
		# alternate port. Such a NAT then measures edm-random, as it behaves.
		var provoke := Codec.encode({"type": "probe", "requestId": _id(),
				"changeAddress": false, "changePort": true})
		for copy in COLLIDE_PROBES:
			send.call(_o.server_address, int(_o.server_port), provoke)
		_classify.sent += COLLIDE_PROBES
		_classify.id = _id()
		_classify.port = msg.altPort
		_classify.next_at = now + mini(COLLIDE_WAIT_MAX_MS,
				CLASSIFY_RETRY_MS + roundi(COLLIDE_WAIT_RTTS * (now - int(_classify.sent_at))))
		return
	_classified(now, nat_class_of(_classify.main_port, msg.observed.port))


func _classified(now: int, measured: String) -> void:
	_classify = {}
	nat = measured
	if state == "registering":
		_register(now)


## Host: ask the server to exchange peers now (the original's finalize_peers).
func finalize(now: int) -> void:
	if not _o.is_host:
		return
	if state == "registering":
		_start_wanted = true
		return
	if state != "lobby" or _token.is_empty():
		return
	for p: Dictionary in _pending.values():
		if p.kind == "start":
			return
	var id := _id()
	_request(now, "start", id, Codec.encode(
			{"type": "start", "requestId": id, "session": _o.session, "token": _token}))


## Leave ([param kind] "leave") or close the session for everyone ("close", host only).
## Best effort; ends in a goodbye event.
func goodbye(now: int, kind: String, reason: String = "Session closed by the host.") -> void:
	var token := _token
	var was_active := state != "left" and state != "idle"
	_stop("left")
	if token.is_empty() or not was_active:
		_emit({"type": "goodbye", "kind": kind, "ok": true})
		return
	var id := _id()
	var msg := {"type": kind, "requestId": id, "session": _o.session, "token": token}
	if kind == "close":
		msg.reason = Codec.truncate_utf8(reason, Codec.MAX_REASON_BYTES)
	_request(now, kind, id, Codec.encode(msg))


## True while the traversal still needs the socket (requests, punches, lingering answers).
func is_busy() -> bool:
	if not _pending.is_empty() or (_punch != null and _punch.answering()):
		return true
	for l: Dictionary in _late:
		if (l.attempt as _Punch).answering():
			return true
	return false


## Whether a request (a goodbye, say) still waits for the server's answer.
func has_pending() -> bool:
	return not _pending.is_empty()


## After punched: whether the session still takes late joiners (the traversal then goes on:
## keepalives, late peers) or a late peer's punch is under way.
func is_open(now: int) -> bool:
	if state != "punched":
		return false
	if now < _open_until:
		return true
	for l: Dictionary in _late:
		if (l.attempt as _Punch).answering():
			return true
	return false


## The time in ms at which the peers last sent us a punch (for handing the port over only
## once they stopped: they confirmed us), or -1.
func last_peer_punch_at() -> int:
	return _punch.last_punch_at if _punch != null else -1


## Whether every confirmed peer's punches reached us at least once.
func heard_every_confirmed_peer() -> bool:
	return _punch != null and _punch.heard_every_confirmed()


func handle_timeout(now: int) -> void:
	if state == "idle":
		return
	if now >= _deadline and _active():
		if not _heard_from_server:
			_fail_unreachable(now)
		elif state == "registering" and _session_missing:
			# The server answered all along: say what it said, not that time ran out.
			_fail("session_not_found", _no_session(now))
		elif state == "lobby":
			var size := " (lobby %s)" % _lobby_size if _lobby_size != "" else ""
			_fail_and_leave(now, "timeout", "the session did not start within %d ms%s" % [
					int(_o.timeout_ms), size])
		else:
			_fail_and_leave(now, "timeout",
					"no connection to all peers within %d ms" % int(_o.timeout_ms))
		return
	_classify_tick(now)
	if now >= _relay_at:
		request_relay(now)
	for r: Dictionary in _relays.values():
		if r.phase != "binding" or now < r.next_bind_at:
			continue
		_send_bind(r)
		r.next_bind_at = now + r.bind_interval
		r.bind_interval = mini(r.bind_interval * 2, REQUEST_RETRY_MAX_MS)
	for p: Dictionary in _pending.values().duplicate():
		if not _pending.has(p.id) or now < p.next_at:
			continue
		if p.kind == "leave" or p.kind == "close":
			if p.tries >= GOODBYE_MAX_TRIES:
				_pending.erase(p.id)
				_emit({"type": "goodbye", "kind": p.kind, "ok": false})
				continue
		elif now - _last_heard_at >= int(_o.get("server_timeout_ms", SERVER_SILENCE_LIMIT_MS)):
			if not _active():
				# Keepalives of an open session after success: the game goes on without them.
				_close_open()
				_pending.erase(p.id)
				continue
			if not _heard_from_server:
				_fail_unreachable(now)
			else:
				_fail("timeout", "no answer from the server %s:%d for %d ms" % [_o.server_address,
						_o.server_port, int(_o.get("server_timeout_ms", SERVER_SILENCE_LIMIT_MS))])
			return
		send.call(_o.server_address, _o.server_port, p.bytes)
		p.tries += 1
		p.next_at = now + p.interval
		p.interval = mini(p.interval * 2, REQUEST_RETRY_MAX_MS)
	if now >= _keepalive_at:
		_keepalive(now)
	if _punch != null:
		_punch.handle_timeout(now)
		_check_punch(now)
	for l: Dictionary in _late:
		var attempt: _Punch = l.attempt
		if now >= l.relay_at:
			l.relay_at = INF
			_ask_relay(now, Array(attempt.pending()))
		attempt.handle_timeout(now)
	_check_late(now)
	if now >= _birthday_close_at:
		_close_lingering_sockets()


## One datagram that arrived on [param socket] (the main one, or a birthday socket). Returns
## false if it is not v2.
func handle(now: int, address: String, port: int, data: PackedByteArray,
		socket: int = MAIN_SOCKET) -> bool:
	var decoded := Codec.decode(data)
	if not decoded.ok:
		return false
	var msg: Dictionary = decoded.msg
	if msg.type == "punch" or msg.type == "punch_ack":
		var late := _late_for(msg.from)
		if not late.is_empty():
			if (late.attempt as _Punch).handle(now, address, port, msg, socket):
				_check_late(now)
			return true
		if _punch != null and _punch.answering():
			if _punch.handle(now, address, port, msg, socket):
				_check_punch(now)
			if _birthday_close_at < INF:
				_keep_sockets(_punch.hit_sockets)
		return true
	if socket != MAIN_SOCKET:
		return true
	if msg.type == "relay_bound":
		_relay_bound(now, address, port, msg.id)
		return true
	if msg.type == "probe_reply":
		_on_probe_reply(now, address, port, msg)
		return true
	if address != _o.server_address or port != int(_o.server_port):
		return true
	# lobby, closed and peer_left count only with our token's tag: the address can be forged.
	if Codec.PUSH_TYPES.has(msg.type) and not (Codec.verify_push(_token, msg)
			or Codec.verify_push(_previous_token, msg)):
		forged_pushes += 1
		return true
	_last_heard_at = now
	_heard_from_server = true
	_from_server(now, msg)
	return true


func _from_server(now: int, msg: Dictionary) -> void:
	var pending: Dictionary = {}
	if msg.requestId != 0 and _pending.has(msg.requestId):
		pending = _pending[msg.requestId]
	var kind: String = pending.get("kind", "")
	match msg.type:
		"registered":
			if kind == "register":
				if int(msg.get("keepaliveMs", 0)) > 0:
					_keepalive_ms = int(msg.keepaliveMs)
				# A server of revision 1 or later says how often to keepalive; it also takes
				# signed relay binds.
				_signed_binds = int(msg.get("keepaliveMs", 0)) > 0
				_registered(msg.token, msg.observed)
				# Using the token at once shows the server that we receive at this address.
				if _start_wanted:
					finalize(now)
				else:
					_keepalive(now)
			elif kind == "keepalive" or kind == "start":
				_rebound(now, pending, msg.token, msg.observed)
		"ok":
			if pending.is_empty():
				return
			_pending.erase(pending.id)
			if kind == "leave" or kind == "close":
				_emit({"type": "goodbye", "kind": kind, "ok": true})
		"error":
			if not pending.is_empty():
				_on_error(now, pending, msg.code, msg.message)
		"relay_granted":
			if kind != "relay" or pending.peer != msg.peer:
				return
			_pending.erase(pending.id)
			_relay_granted(now, msg)
		"peer_left":
			_peer_left(now, msg.name, msg.why)
		"lobby":
			if kind == "keepalive":
				_pending.erase(pending.id)
				_keepalive_at = now + _keepalive_ms
			if state != "lobby" or msg.version <= _lobby_version:
				return
			_lobby_version = msg.version
			_lobby_size = "%d/%d" % [msg.nicknames.size(), msg.maxPlayers]
			_emit({"type": "lobby", "nicknames": msg.nicknames.duplicate(),
					"max_players": msg.maxPlayers})
		"peers":
			# Peers prove the registration: a client whose registered was lost goes on. Once
			# registered, only a list with our token is ours.
			_registered(msg.token, msg.observed)
			if _token.is_empty() or msg.token != _token:
				return
			if kind == "keepalive":
				_pending.erase(pending.id)
				_keepalive_at = now + _keepalive_ms
			_on_peers(now, msg)
		"closed":
			if state == "punched":
				# The game goes on peer to peer; the open session behind it is gone.
				_close_open()
				_emit({"type": "session_ended", "code": msg.code, "message": msg.reason})
				return
			_fail(msg.code, msg.reason if msg.reason != "" else "Session closed.")


func _registered(token: PackedByteArray, endpoint: Dictionary) -> void:
	if state != "registering":
		return
	for p: Dictionary in _pending.values().duplicate():
		if p.kind == "register":
			_pending.erase(p.id)
	_token = token
	observed = endpoint
	state = "lobby"
	_emit({"type": "registered", "observed": endpoint})


## The server saw us at another address (our NAT re-mapped us) and sent a fresh token. After
## punched too: an open session's keepalives leave from the game's port (the forwarder's),
## which after a birthday win is not the one we registered from, and the server must push
## late peers' lists there.
func _rebound(now: int, pending: Dictionary, token: PackedByteArray, endpoint: Dictionary) -> void:
	if state != "lobby" and state != "punched":
		return
	_pending.erase(pending.id)
	_previous_token = _token
	_token = token
	observed = endpoint
	if pending.kind == "start":
		finalize(now)
	else:
		_keepalive(now)


func _keepalive(now: int) -> void:
	_keepalive_at = INF
	if _token.is_empty():
		return
	var open := now < _open_until and (state == "punching" or state == "punched")
	if state != "lobby" and not open:
		return
	# One keepalive at a time: its reply (or its retries) schedules the next.
	for p: Dictionary in _pending.values():
		if p.kind == "keepalive":
			return
	var id := _id()
	_request(now, "keepalive", id, Codec.encode({"type": "keepalive", "requestId": id,
			"session": _o.session, "token": _token, "lobbyVersion": _lobby_version}))


func _fail_unreachable(now: int) -> void:
	_fail("server_unreachable", ("no answer from the server %s:%d in %d ms: check that it runs"
			+ " there and that its UDP port is open") % [
			_o.server_address, _o.server_port, now - _started_at])


func _on_error(now: int, pending: Dictionary, code: String, message: String) -> void:
	var kind: String = pending.kind
	if kind == "relay":
		# The punch goes on; at the end of its budget this is the cause, if still missed.
		_pending.erase(pending.id)
		_relays.erase(pending.peer)
		_relay_failures[pending.peer] = "the server cannot relay (%s: %s)" % [code, message]
		return
	if kind == "leave" or kind == "close":
		_pending.erase(pending.id)
		var gone := code == "not_authorized" or code == "session_not_found"
		_emit({"type": "goodbye", "kind": kind, "ok": gone})
		return
	if kind == "register" and code == "session_not_found" and not _o.is_host:
		_session_missing = true
		if now < _session_wait_until:
			# The host may not have registered yet: ask again soon.
			pending.next_at = now + SESSION_WAIT_RETRY_MS
			pending.interval = REQUEST_RETRY_FIRST_MS
			return
	_pending.erase(pending.id)
	if kind == "keepalive" and state == "punched":
		# The open session ended (its keep-open ran out, or it was closed): the game goes on.
		_close_open()
		_emit({"type": "session_ended", "code": "session_closed", "message": message})
		return
	if kind == "register" and not _o.is_host:
		if code == "session_not_found":
			_fail(code, _no_session(now))
			return
		if code == "session_full":
			_fail(code, "session \"%s\" cannot take you: %s" % [_o.session, message])
			return
	if kind == "keepalive" and (code == "not_authorized" or code == "session_not_found"):
		_fail("session_closed", "the session is gone: " + message)
		return
	if kind == "start" and code == "not_authorized":
		_fail("session_closed", "the session is gone: " + message)
		return
	_fail(code, message)


func _no_session(now: int) -> String:
	return ("no session \"%s\" on the server after %d s: check the name, and that its host has"
			+ " started hosting") % [_o.session, roundi((now - _started_at) / 1000.0)]


func _on_peers(now: int, msg: Dictionary) -> void:
	if _token.is_empty():
		return
	var version := int(msg.get("version", 0))
	# An older list than the one we act on (a re-push that crossed a newer one): stale.
	if version < _peers_version:
		return
	if version != _parts_version:
		_peer_parts.clear()
		_parts_version = version
	for i in msg.peers.size():
		_peer_parts[msg.first + i] = msg.peers[i]
	var peers: Array[Dictionary] = []
	for i in msg.total:
		if not _peer_parts.has(i):
			return
		peers.append(_peer_parts[i])
	# Ack every complete copy, so a server whose earlier ack got lost stops re-sending.
	var ack := {"type": "peers_ack", "requestId": _id(), "session": _o.session, "token": _token}
	if msg.has("version"):
		ack.version = version
	send.call(_o.server_address, _o.server_port, Codec.encode(ack))
	var newer := version > _peers_version
	_peers_version = version
	if msg.has("openS"):
		_open_until = now + int(msg.openS) * 1000 if int(msg.openS) > 0 else -INF
	if state == "punching" or state == "punched":
		if newer:
			_on_late_peers(now, msg.punchKey, peers)
		return
	if state != "lobby":
		return
	state = "punching"
	# An open session needs us alive to the server after the start (late joiners' lists).
	_keepalive_at = now + _keepalive_ms if now < _open_until else INF
	for p: Dictionary in _pending.values().duplicate():
		if p.kind == "keepalive" or p.kind == "start":
			_pending.erase(p.id)
	_emit({"type": "peers", "peers": peers})
	_peers_by_name = {}
	for p: Dictionary in peers:
		_peers_by_name[p.name] = p
	var budget := int(_o.get("punch_budget_ms", PUNCH_BUDGET_MS))
	_punch = _Punch.new(_o.name, msg.punchKey, peers, now, budget, _send_on)
	_punch.on_direct = _on_direct
	var relay_delay := int(_o.get("relay_delay_ms", RELAY_DELAY_MS))
	var relay_now: Array[String] = []
	for p: Dictionary in peers:
		var strategy := "punch"
		if bool(_o.get("nat_strategy", true)):
			strategy = peer_strategy(nat, String(p.get("nat", "unknown")), peers.size())
		strategies[p.name] = strategy
		match strategy:
			"relay":
				relay_now.append(p.name)
			"sequential-easy", "sequential-hard":
				relay_delay = maxi(relay_delay, SEQUENTIAL_RELAY_DELAY_MS)
				_punch.set_prediction(now, p.name,
						"sweep" if strategy == "sequential-easy" else "none")
			"birthday-easy":
				relay_delay = maxi(relay_delay, BIRTHDAY_RELAY_DELAY_MS)
				_punch.start_birthday_easy(now, p.name)
			"birthday-hard":
				relay_delay = maxi(relay_delay, BIRTHDAY_RELAY_DELAY_MS)
				for socket in range(1, BIRTHDAY_SOCKETS + 1):
					# A socket that cannot be bound is left out; the others still try.
					if open_socket.is_valid() and bool(open_socket.call(socket)):
						_birthday_sockets.append(socket)
				_punch.start_birthday_hard(now, p.name, _birthday_sockets)
	if bool(_o.get("relay", true)):
		# A short punch budget asks sooner: the relay must have time to work within it.
		_relay_at = now + mini(relay_delay, budget / 2)
		# Both NATs pick a port per destination: no direct path to expect, relay at once.
		if not relay_now.is_empty():
			request_relay(now, relay_now)
			_relay_at = now + mini(relay_delay, budget / 2)
	_check_punch(now)


## Asks the server for a relay allocation towards [param names] (default: every peer not
## confirmed yet and not gone) while the punch goes on. Done by itself relay_delay_ms after
## the peers arrived. A no-op with relay false or once settled.
func request_relay(now: int, names: Array = []) -> void:
	_relay_at = INF
	if state != "punching" or _punch == null:
		return
	_ask_relay(now, names if not names.is_empty() else Array(_punch.pending()))


## Asks for a relay allocation towards each of [param names] still being punched (by the
## first attempt or a late one).
func _ask_relay(now: int, names: Array) -> void:
	if not bool(_o.get("relay", true)) or _token.is_empty():
		return
	for peer: String in names:
		var attempt := _attempt_for(peer)
		if attempt == null or not attempt.pending().has(peer):
			continue
		if _relays.has(peer) or _relay_failures.has(peer):
			continue
		var id := _id()
		_relays[peer] = {"phase": "asking", "port": 0, "id": PackedByteArray(),
				"bind_token": PackedByteArray(), "next_bind_at": INF,
				"bind_interval": REQUEST_RETRY_FIRST_MS}
		_request(now, "relay", id, Codec.encode({"type": "relay_allocate", "requestId": id,
				"session": _o.session, "token": _token, "peer": peer}), peer)


## The server granted an allocation: bind our socket's source to it on the relay.
func _relay_granted(now: int, msg: Dictionary) -> void:
	var r: Dictionary = _relays.get(msg.peer, {})
	var attempt := _attempt_for(msg.peer)
	if r.is_empty() or r.phase != "asking" or attempt == null or attempt.state != "punching":
		return
	r.phase = "binding"
	r.port = msg.port
	r.id = msg.id
	r.bind_token = msg.bindToken
	r.next_bind_at = now + REQUEST_RETRY_FIRST_MS
	r.bind_interval = REQUEST_RETRY_FIRST_MS * 2
	_send_bind(r)


## A signed relay_bind with a fresh counter (our next request id): the relay moves a bound
## side only for a counter it has not seen, so a captured bind replays as nothing.
func _send_bind(r: Dictionary) -> void:
	var id := _id()
	var bytes := (Codec.encode_relay_bind(r.bind_token, id, r.id) if _signed_binds
			else Codec.encode({"type": "relay_bind", "requestId": id, "id": r.id,
				"proof": r.bind_token}))
	send.call(_o.server_address, r.port, bytes)


## The relay acknowledged our bind: punch the peer through it too.
func _relay_bound(now: int, address: String, port: int, id: PackedByteArray) -> void:
	if address != _o.server_address:
		return
	for name: String in _relays:
		var r: Dictionary = _relays[name]
		if r.phase != "binding" or r.port != port or r.id != id:
			continue
		r.phase = "bound"
		var late := _late_for(name)
		var attempt: _Punch = late.attempt if not late.is_empty() else _punch
		if attempt != null:
			attempt.add_relay(now, name, _o.server_address, port)
		return


func _drop_relay(name: String) -> void:
	_relays.erase(name)
	for p: Dictionary in _pending.values().duplicate():
		if p.kind == "relay" and p.get("peer", "") == name:
			_pending.erase(p.id)


## The attempt punching [param name] now: a late one, or the first while it punches.
func _attempt_for(name: String) -> _Punch:
	var late := _late_for(name)
	if not late.is_empty():
		return late.attempt
	return _punch if state == "punching" else null


## The late attempt that punches [param name] (the newest: a rejoin replaces an older one),
## or {}.
func _late_for(name: String) -> Dictionary:
	for i in range(_late.size() - 1, -1, -1):
		if (_late[i].attempt as _Punch).has(name):
			return _late[i]
	return {}


## A newer peer list of an open session: members that are new, or back under their name from
## another address, are punched by an attempt of their own (the first one may have stopped
## answering long ago); members missing from it are gone.
func _on_late_peers(now: int, punch_key: PackedByteArray, peers: Array[Dictionary]) -> void:
	var fresh: Array[Dictionary] = []
	var listed := {}
	for p: Dictionary in peers:
		listed[p.name] = true
		var known: Dictionary = _peers_by_name.get(p.name, {})
		if known.is_empty() or known.publicEndpoint.address != p.publicEndpoint.address \
				or known.publicEndpoint.port != p.publicEndpoint.port:
			fresh.append(p)
	for name: String in _peers_by_name.keys():
		if not listed.has(name):
			_peer_left(now, name, "left")
	_peers_by_name = {}
	for p: Dictionary in peers:
		_peers_by_name[p.name] = p
	if fresh.is_empty():
		return
	for p: Dictionary in fresh:
		# A member back under its name is a new endpoint: its old relay and verdicts are void.
		_drop_relay(p.name)
		_relay_failures.erase(p.name)
	_emit({"type": "late_peers", "peers": fresh})
	var budget := int(_o.get("punch_budget_ms", PUNCH_BUDGET_MS))
	var attempt := _Punch.new(_o.name, punch_key, fresh, now, budget, _send_on)
	attempt.on_direct = _on_direct
	var late := {"attempt": attempt, "relay_at": INF, "reported": false}
	_late.append(late)
	var relay_delay := int(_o.get("relay_delay_ms", RELAY_DELAY_MS))
	var relay_now: Array[String] = []
	for p: Dictionary in fresh:
		var strategy := "punch"
		if bool(_o.get("nat_strategy", true)):
			strategy = peer_strategy(nat, String(p.get("nat", "unknown")), peers.size())
		strategies[p.name] = strategy
		# Birthday probing needs the game's one socket for one peer: not after the start.
		if strategy == "relay" or strategy.begins_with("birthday"):
			relay_now.append(p.name)
		elif strategy == "sequential-easy" or strategy == "sequential-hard":
			relay_delay = maxi(relay_delay, SEQUENTIAL_RELAY_DELAY_MS)
			attempt.set_prediction(now, p.name,
					"sweep" if strategy == "sequential-easy" else "none")
	if bool(_o.get("relay", true)):
		late.relay_at = now + mini(relay_delay, budget / 2)
		if not relay_now.is_empty():
			_ask_relay(now, relay_now)
	_check_late(now)


## Reports late attempts that settled, and forgets those that stopped answering.
func _check_late(now: int) -> void:
	for l: Dictionary in _late:
		var attempt: _Punch = l.attempt
		if l.reported or attempt.state == "punching":
			continue
		l.reported = true
		l.relay_at = INF
		for peer: Dictionary in attempt.confirmed():
			_emit({"type": "peer_joined", "peer": peer})
		for f: Dictionary in attempt.failures():
			if _relays.get(f.name, {}).get("phase", "") != "bound":
				_drop_relay(f.name)
			if _relay_failures.has(f.name):
				f.cause = "relay_unavailable"
				f.relay = _relay_failures[f.name]
			_emit({"type": "peer_failed", "peer": f})
	var kept: Array[Dictionary] = []
	for l: Dictionary in _late:
		if not l.reported or now <= (l.attempt as _Punch).linger_until():
			kept.append(l)
	_late = kept


## The server says a peer is gone: a punch or relay to it ends now if it left; after punched,
## the game is told.
func _peer_left(now: int, name: String, why: String) -> void:
	var late := _late_for(name)
	if not late.is_empty() and (late.attempt as _Punch).state == "punching":
		if why == "left":
			_drop_relay(name)
		if (late.attempt as _Punch).mark_gone(now, name, why):
			_check_late(now)
		return
	if state == "punched":
		# Told once: the push, or a newer list without it, whichever comes first (a silent
		# member is off the list too, so the newer list does not tell it again as "left").
		var known := _peers_by_name.erase(name)
		if why == "left" and not known:
			return
		if why == "left":
			_drop_relay(name)
		_emit({"type": "peer_left", "name": name, "why": why})
		return
	if _punch == null or state != "punching":
		return
	if why == "left":
		_drop_relay(name)
	if _punch.mark_gone(now, name, why):
		_check_punch(now)


## The open session is over for us: no more keepalives.
func _close_open() -> void:
	_open_until = -INF
	_keepalive_at = INF
	for p: Dictionary in _pending.values().duplicate():
		if p.kind == "keepalive":
			_pending.erase(p.id)


func _on_direct(peer: Dictionary, previous: Dictionary) -> void:
	if state == "punched":
		_emit({"type": "path_changed", "peer": peer, "previous": previous})


## The NAT class [param name]'s host/join carried, as the server passed it on ("unknown"
## when it sent none).
func peer_nat(name: String) -> String:
	if _peers_by_name.has(name):
		return String(_peers_by_name[name].get("nat", "unknown"))
	for i: int in _peer_parts:
		var p: Dictionary = _peer_parts[i]
		if p.name == name:
			return String(p.get("nat", "unknown"))
	return "unknown"


## Every peer reached so far, as now (a relayed peer that got a direct path since the punched
## event is reported direct).
func confirmed_peers() -> Array[Dictionary]:
	var out: Array[Dictionary] = []
	if _punch != null:
		out = _punch.confirmed()
	return out


## Whether [param address]:[param port] is the server (its main or alternate port, or one of
## our relay ports): the rest is peers' direct paths.
func is_server_endpoint(address: String, port: int) -> bool:
	if address != _o.server_address:
		return false
	if port == int(_o.server_port) or (server_alt_port != 0 and port == server_alt_port):
		return true
	for r: Dictionary in _relays.values():
		if r.port == port:
			return true
	return false


## Stops asking, binding and punching (the node handed the port over): the path is fixed.
func stop_punching() -> void:
	_relay_at = INF
	for name: String in _relays.keys():
		if _relays[name].phase != "bound" and _late_for(name).is_empty():
			_drop_relay(name)
	if _punch != null:
		_punch.stop_upgrading()


func _check_punch(now: int) -> void:
	if _punch == null or state != "punching" or _punch.state == "punching":
		return
	_settle(now)


## Every peer is reached or known to be unreachable: success when all are, or (unless
## require_all_peers) at least one; a joiner with require_host also needs the host.
func _settle(now: int) -> void:
	var peers := _punch.confirmed()
	_settle_birthday_sockets(now)
	# Allocations not working by now are of no use: stop asking and binding.
	_relay_at = INF
	for name: String in _relays.keys():
		if _relays[name].phase != "bound" and _late_for(name).is_empty():
			_drop_relay(name)
	var failed: Array[Dictionary] = []
	for f: Dictionary in _punch.failures():
		if _relay_failures.has(f.name):
			f.cause = "relay_unavailable"
			f.relay = _relay_failures[f.name]
		elif bool(_o.get("relay", true)):
			var r: Dictionary = _relays.get(f.name, {})
			f.relay = "our relay port %d works but %s never reached it" % [r.port, f.name] \
					if r.get("phase", "") == "bound" else "no relay allocation was granted in time"
		else:
			f.relay = "the relay is off (use_relay false)"
		failed.append(f)
	var host_missed := false
	for f: Dictionary in failed:
		if f.is_host and bool(_o.get("require_host", false)):
			host_missed = true
	var partial_ok := not peers.is_empty() and not bool(_o.get("require_all_peers", false))
	if failed.is_empty() or (partial_ok and not host_missed):
		state = "punched"
		_deadline = INF
		_emit({"type": "punched", "peers": peers, "failed": failed,
				"elapsed_ms": now - _started_at, "punch_ms": now - _punch.started_at})
		return
	var texts: Array[String] = []
	var gone := true
	for f: Dictionary in failed:
		texts.append("%s: %s (%s)" % [f.name, f.cause, f.relay])
		if f.cause != "left" and f.cause != "silent":
			gone = false
	var reached := ""
	if not peers.is_empty():
		var names: Array[String] = []
		for p: Dictionary in peers:
			names.append(p.name)
		reached = "reached %s but not all: " % ", ".join(names)
	var stats := " (%d candidates, %d datagrams sent)" % [_punch.candidate_count(), _punch.sent]
	_fail_and_leave(now, "peer_left" if gone else "punch_failed",
			"%sno direct or relayed path to %s%s" % [reached, "; ".join(texts), stats])


## Fails, and tells the server we are gone so that our seat (or lobby) is freed at once.
func _fail_and_leave(now: int, code: String, message: String) -> void:
	var token := _token
	var registered := state != "registering" and _active()
	_fail(code, message)
	if token.is_empty() or not registered:
		return
	var id := _id()
	_request(now, "leave", id, Codec.encode(
			{"type": "leave", "requestId": id, "session": _o.session, "token": token}))


func _active() -> bool:
	return state == "registering" or state == "lobby" or state == "punching"


func _fail(code: String, message: String) -> void:
	if not _active():
		return
	_stop("failed")
	_emit({"type": "failed", "code": code, "message": message})


func _stop(new_state: String) -> void:
	state = new_state
	_pending.clear()
	_keepalive_at = INF
	_deadline = INF
	_relay_at = INF
	_relays.clear()
	_classify = {}
	_close_lingering_sockets()
	if _punch != null and _punch.state == "punching":
		_punch = null
	elif _punch != null:
		_punch.stop_upgrading()


func _request(now: int, kind: String, id: int, bytes: PackedByteArray,
		peer: String = "") -> void:
	if bytes.is_empty():
		_fail("bad_request", "cannot encode the %s request" % kind)
		return
	_pending[id] = {"kind": kind, "id": id, "bytes": bytes, "next_at": now + REQUEST_RETRY_FIRST_MS,
			"interval": REQUEST_RETRY_FIRST_MS * 2, "tries": 1, "peer": peer}
	send.call(_o.server_address, _o.server_port, bytes)


## The punch settled: a peer confirmed through a birthday socket makes that socket the game's
## ([member game_socket]). Both sides confirm on their own, so the peer may confirm us at
## another of our mappings, and its punches to them may still be on the way (an eim peer
## punches back only the first few mappings it heard from): every birthday socket its punches
## or acks reach before the punch's linger ends stays open until the hand-over (the first one
## is the game's when we confirmed the peer on the main socket: an eim peer accepts us from
## wherever it already sent to), the others close then. Through the relay they close now.
func _settle_birthday_sockets(now: int) -> void:
	if _birthday_sockets.is_empty():
		return
	var hits: Array[int] = _punch.hit_sockets
	var keep: int = hits[0] if not hits.is_empty() else MAIN_SOCKET
	var relayed := false
	for p: Dictionary in _punch.confirmed():
		if p.path == "birthday":
			keep = _punch.socket_of(p.name)
		elif p.path == "relay":
			relayed = true
	if relayed:
		keep = MAIN_SOCKET
	game_socket = keep
	var game: Array[int] = [keep]
	_keep_sockets(game)
	if relayed or not _punch.answering():
		_close_lingering_sockets()
		return
	_keep_sockets(hits)
	_birthday_close_at = maxf(now, _punch.linger_until())


## Takes [param sockets] that are still open out of those to close.
func _keep_sockets(sockets: Array[int]) -> void:
	for socket in sockets:
		_birthday_sockets.erase(socket)


## Closes every birthday socket not kept.
func _close_lingering_sockets() -> void:
	for socket in _birthday_sockets:
		if close_socket.is_valid():
			close_socket.call(socket)
	_birthday_sockets = []
	_birthday_close_at = INF


## Sends from [param socket]: the main one through [member send], a birthday socket through
## [member send_from].
func _send_on(socket: int, address: String, port: int, data: PackedByteArray) -> void:
	if socket == MAIN_SOCKET:
		send.call(address, port, data)
	elif send_from.is_valid():
		send_from.call(socket, address, port, data)


func _id() -> int:
	var id := _next_id
	_next_id = 1 if _next_id >= 0xfffffffe else _next_id + 1
	return id


func _emit(event: Dictionary) -> void:
	if on_event.is_valid():
		on_event.call(event)


## The punch (section 6): every candidate of every unconfirmed peer, each round, until each
## peer acked one of our punches.
class _Punch:
	extends RefCounted

	var state := "punching"
	var sent := 0
	var rejected := 0
	var last_punch_at := -1
	var started_at := 0
	## Birthday probes the easy side sent, and punches the hard side sent from its sockets.
	var birthday_probes := 0
	var birthday_punches := 0
	## Birthday sockets a valid punch or ack from a peer arrived on, in order: the peer may
	## have confirmed us at any of their mappings.
	var hit_sockets: Array[int] = []
	## [code]func(peer: Dictionary, previous: Dictionary)[/code]: a relayed peer got a direct
	## path (within the budget).
	var on_direct: Callable

	var _self_name: String
	var _key: PackedByteArray
	## [code]func(socket: int, address: String, port: int, data: PackedByteArray)[/code].
	var _send: Callable
	## name -> {info, candidates: [{address, port, kind, socket, sweep}], reflexive,
	## confirmed, heard, gone, relay: {address, port} once our bind to it was acknowledged,
	## socket (ours its confirmation came through), predict ("late", "sweep" or "none"),
	## sweep_from (the round the sweep started in)}
	var _peers := {}
	## The easy side's birthday probes: {peer, started_at, sent, next_at}; empty when none.
	var _birthday_easy := {}
	## The hard side's birthday punches: {peer, sockets, rounds, next_at}; empty when none.
	var _birthday_hard := {}
	## The hard side's birthday sockets (kept after its punches end: hits still count).
	var _hard_sockets := {}
	var _rng := RandomNumberGenerator.new()
	var _order: Array[String] = []
	var _fail_at: int
	var _round := 0
	var _next_round_at: int
	var _seq := 1
	var _linger_until: float = INF
	## Relayed peers' direct candidates are punched until then (the budget's end).
	var _upgrade_until: float = -INF
	var _last_now := -1

	func _init(self_name: String, key: PackedByteArray, peers: Array[Dictionary], now: int,
			budget_ms: int, send: Callable) -> void:
		_self_name = self_name
		_key = key
		_send = send
		_fail_at = now + budget_ms
		_next_round_at = now
		started_at = now
		_rng.randomize()
		for info: Dictionary in peers:
			var peer := {"info": info, "candidates": [], "reflexive": 0, "confirmed": {},
					"heard": false, "gone": "", "relay": {}, "socket": MAIN_SOCKET,
					"predict": "late", "sweep_from": 0}
			_add_candidate(peer, info.publicEndpoint.address, info.publicEndpoint.port, "public")
			for c: Dictionary in info.candidates:
				_add_candidate(peer, c.address, c.port, "local")
			_peers[info.name] = peer
			_order.append(info.name)
		if _peers.is_empty():
			_finish(now)
		else:
			handle_timeout(now)

	func answering() -> bool:
		return state == "punching" or state == "punched"

	func has(name: String) -> bool:
		return _peers.has(name)

	## When a settled attempt stops answering peers (INF while punching).
	func linger_until() -> float:
		return _linger_until

	## Names of the peers not confirmed yet and not gone.
	func pending() -> Array[String]:
		var out: Array[String] = []
		for name in _order:
			var p: Dictionary = _peers[name]
			if p.confirmed.is_empty() and p.gone == "":
				out.append(name)
		return out

	## Punched, but some peers are reached through the relay only: their direct candidates
	## are still punched until the budget ends, so a direct path that opens late is found.
	func upgrading() -> bool:
		if state != "punched" or _upgrade_until <= _last_now:
			return false
		for name in _order:
			if _peers[name].confirmed.get("path", "") == "relay":
				return true
		return false

	func stop_upgrading() -> void:
		_upgrade_until = -INF

	## The relay's port for [param name] works on our side (our relay_bind was acknowledged):
	## punch through it too. A punch_ack that comes back through it confirms the peer with
	## path "relay" (the peer's address is then the relay's).
	func add_relay(now: int, name: String, address: String, port: int) -> bool:
		if not _peers.has(name) or state == "failed":
			return false
		var peer: Dictionary = _peers[name]
		peer.relay = {"address": address, "port": port}
		var index := _index_of(peer, address, port)
		if index >= 0:
			# A punch through the relay arrived first and made it a reflexive candidate.
			if peer.candidates[index].kind == "reflexive":
				peer.reflexive -= 1
			peer.candidates[index].kind = "relay"
			peer.candidates[index].sweep = false
		else:
			index = _add_candidate(peer, address, port, "relay")
		if index >= 0 and peer.confirmed.is_empty() and state == "punching":
			_punch(now, peer, index)
		return true

	func _via_relay(peer: Dictionary, address: String, port: int) -> bool:
		return not peer.relay.is_empty() and peer.relay.address == address \
				and peer.relay.port == port

	func confirmed() -> Array[Dictionary]:
		var out: Array[Dictionary] = []
		for name in _order:
			if not _peers[name].confirmed.is_empty():
				out.append(_peers[name].confirmed)
		return out

	func heard_every_confirmed() -> bool:
		for name in _order:
			var p: Dictionary = _peers[name]
			if not p.confirmed.is_empty() and not p.heard:
				return false
		return true

	func failures() -> Array[Dictionary]:
		var out: Array[Dictionary] = []
		for name in _order:
			var p: Dictionary = _peers[name]
			if not p.confirmed.is_empty():
				continue
			var cause := "no_answer"
			if p.gone == "left":
				cause = "left"
			elif p.heard:
				cause = "one_way"
			elif p.gone != "":
				cause = p.gone
			out.append({"name": p.info.name, "nickname": p.info.nickname,
					"is_host": p.info.isHost, "cause": cause})
		return out

	## We are the easy side (eim) of a birthday pair with [param name] (edm-random): from now
	## on probe random ports of its public address, [constant BIRTHDAY_PROBE_RATE] a second at
	## most, up to [constant BIRTHDAY_PROBE_BUDGET], until it is confirmed.
	func start_birthday_easy(now: int, name: String) -> bool:
		if not _peers.has(name) or state != "punching":
			return false
		_birthday_easy = {"peer": _peers[name], "started_at": now, "sent": 0, "next_at": now}
		handle_timeout(now)
		return true

	## We are the hard side (edm-random) of a birthday pair with [param name] (eim): punch its
	## public endpoint from each of [param sockets] (already bound),
	## [constant BIRTHDAY_HARD_ROUNDS] times. A punch or ack that arrives on one of them
	## confirms the peer with path "birthday" through that socket ([method socket_of]).
	func start_birthday_hard(now: int, name: String, sockets: Array[int]) -> bool:
		if not _peers.has(name) or state != "punching":
			return false
		_birthday_hard = {"peer": _peers[name], "sockets": sockets.duplicate(), "rounds": 0,
				"next_at": now}
		for socket in sockets:
			_hard_sockets[socket] = true
		handle_timeout(now)
		return true

	## How [param name]'s ports are predicted: "late" (+-PREDICT_PORT_RANGE after
	## PREDICT_AFTER_ROUNDS), "sweep" (+-SWEEP_PORT_RANGE at once, every SWEEP_EVERY_ROUNDS-th
	## round) or "none" (an eim peer keeps its port).
	func set_prediction(now: int, name: String, mode: String) -> bool:
		if not _peers.has(name) or state != "punching":
			return false
		var peer: Dictionary = _peers[name]
		peer.predict = mode
		if mode != "sweep":
			return true
		# This round (already punched) counts as the first sweep round: the sweep goes out now.
		peer.sweep_from = _round
		var base: Dictionary = peer.info.publicEndpoint
		for d in range(1, SWEEP_PORT_RANGE + 1):
			for port: int in [base.port + d, base.port - d]:
				if port < 1 or port > 65535:
					continue
				var index := _add_candidate(peer, base.address, port, "predicted",
						MAIN_SOCKET, true)
				if index >= 0 and peer.confirmed.is_empty():
					_punch(now, peer, index)
		return true

	## The socket a confirmed peer was confirmed through (MAIN_SOCKET unless "birthday").
	func socket_of(name: String) -> int:
		return int(_peers[name].socket) if _peers.has(name) else MAIN_SOCKET

	func candidate_count() -> int:
		var n := 0
		for name in _order:
			n += _peers[name].candidates.size()
		return n

	## The server said [param name] is gone; true when that ended the punch.
	func mark_gone(now: int, name: String, why: String) -> bool:
		if not _peers.has(name) or state != "punching":
			return false
		var peer: Dictionary = _peers[name]
		if not peer.confirmed.is_empty():
			return false
		if peer.gone != "left":
			peer.gone = why
		if why != "left":
			return false
		for n in _order:
			var p: Dictionary = _peers[n]
			if p.confirmed.is_empty() and p.gone != "left":
				return false
		_settle(now)
		return true

	func handle_timeout(now: int) -> void:
		_last_now = now
		if state != "punching" and not upgrading():
			return
		if now >= _fail_at:
			if state == "punching":
				_settle(now)
			return
		_birthday_tick(now)
		if now < _next_round_at:
			return
		_round += 1
		if _round == PREDICT_AFTER_ROUNDS + 1:
			_add_predictions()
		for name in _order:
			var peer: Dictionary = _peers[name]
			if peer.gone == "left":
				continue
			var relayed: bool = peer.confirmed.get("path", "") == "relay"
			if not peer.confirmed.is_empty() and not relayed:
				continue
			var sweep_round: bool = _round >= peer.sweep_from \
					and (_round - peer.sweep_from) % SWEEP_EVERY_ROUNDS == 0
			for i in peer.candidates.size():
				var c: Dictionary = peer.candidates[i]
				# A relayed peer: only the direct candidates (the relay path is known to work).
				if relayed and c.kind == "relay":
					continue
				if c.sweep and not sweep_round:
					continue
				_punch(now, peer, i)
		var interval := PUNCH_INTERVAL_MS
		if _round >= PUNCH_FAST_ROUNDS:
			var slow := maxi(0, floori((_round - PUNCH_FAST_ROUNDS) / 10.0) + 1)
			interval = mini(PUNCH_INTERVAL_MS * int(pow(2, slow)), PUNCH_INTERVAL_MAX_MS)
		_next_round_at = now + interval

	## A decoded peer message from address:port that arrived on our [param socket]; true
	## when it changed the outcome.
	func handle(now: int, address: String, port: int, msg: Dictionary,
			socket: int = MAIN_SOCKET) -> bool:
		_last_now = now
		if state == "failed" or now > _linger_until:
			return false
		if not _peers.has(msg.from) or msg.to != _self_name \
				or not Codec.verify_punch_tag(_key, msg.signed, msg.tag):
			rejected += 1
			return false
		var peer: Dictionary = _peers[msg.from]
		if _hard_sockets.has(socket) and not hit_sockets.has(socket):
			hit_sockets.append(socket)
		if msg.type == "punch":
			# Answered from the socket it arrived on: only that socket's mapping lets it through.
			_send_to(address, port, {"type": "punch_ack", "requestId": _next_seq(),
					"from": _self_name, "to": peer.info.name, "candidate": msg.candidate,
					"sentAt": msg.sentAt}, socket)
			peer.heard = true
			last_punch_at = now
			var upgrade: bool = peer.confirmed.get("path", "") == "relay" and upgrading()
			if (not peer.confirmed.is_empty() or state != "punching") and not upgrade:
				return false
			if upgrade and _via_relay(peer, address, port):
				return false
			# The peer reached us from here: a mapping towards us exists, punch straight back
			# (from the socket it reached: a birthday socket's hit is a candidate of its own).
			var index := _index_of(peer, address, port, socket)
			if index >= 0 and peer.candidates[index].sweep:
				# The sweep found the peer's mapping: punch it every round from now on.
				peer.candidates[index].sweep = false
			if index < 0 and socket != MAIN_SOCKET:
				if _hard_sockets.has(socket):
					index = _add_candidate(peer, address, port, "birthday", socket)
			elif index < 0 and peer.reflexive < MAX_REFLEXIVE_CANDIDATES:
				peer.reflexive += 1
				index = _add_candidate(peer, address, port, "reflexive")
			if index >= 0:
				_punch(now, peer, index)
			return false
		var via_relay := socket == MAIN_SOCKET and _via_relay(peer, address, port)
		# An ack on a birthday socket, or one that echoes a birthday probe: the birthday path.
		var birthday: bool = socket != MAIN_SOCKET or msg.candidate == BIRTHDAY_CANDIDATE
		# Where the ack came from decides: through the relay's port it is the relay path.
		var path := "reflexive"
		if via_relay:
			path = "relay"
		elif birthday:
			path = "birthday"
		elif msg.candidate < peer.candidates.size() \
				and peer.candidates[msg.candidate].kind != "relay":
			path = peer.candidates[msg.candidate].kind
		var confirmed := {"name": peer.info.name, "nickname": peer.info.nickname,
				"is_host": peer.info.isHost, "address": address, "port": port, "path": path,
				"rtt_ms": posmod(now - msg.sentAt, U32)}
		var previous: Dictionary = peer.confirmed
		if not previous.is_empty():
			# Relayed, and now a direct ack: the direct path wins (and is reported).
			if previous.path != "relay" or via_relay or not upgrading():
				return false
			peer.confirmed = confirmed
			if on_direct.is_valid():
				on_direct.call(confirmed, previous)
			return true
		if state != "punching":
			return false
		if socket != MAIN_SOCKET and not _hard_sockets.has(socket):
			return false
		peer.confirmed = confirmed
		peer.socket = socket
		for name in _order:
			var p: Dictionary = _peers[name]
			if p.confirmed.is_empty() and p.gone != "left":
				return true
		_finish(now)
		return true

	func _settle(now: int) -> void:
		if confirmed().is_empty():
			state = "failed"
		else:
			_finish(now)

	func _finish(now: int) -> void:
		state = "punched"
		_last_now = now
		var relayed := false
		for p: Dictionary in confirmed():
			if p.path == "relay":
				relayed = true
		# Relayed peers keep being punched directly until the budget ends, and answered after.
		_upgrade_until = _fail_at if relayed else -INF
		_linger_until = maxi(now, _fail_at if relayed else now) + PUNCH_LINGER_MS

	func _punch(now: int, peer: Dictionary, index: int) -> void:
		var c: Dictionary = peer.candidates[index]
		_send_to(c.address, c.port, {"type": "punch", "requestId": _next_seq(),
				"from": _self_name, "to": peer.info.name, "candidate": index,
				"sentAt": posmod(now, U32)}, c.socket)

	func _send_to(address: String, port: int, fields: Dictionary,
			socket: int = MAIN_SOCKET) -> void:
		sent += 1
		_send.call(socket, address, port, Codec.encode_punch(_key, fields))

	## Whether birthday probing towards [param peer] goes on: the punch is under way and the peer
	## has neither been confirmed nor left.
	func _birthday_goes_on(peer: Dictionary) -> bool:
		return state == "punching" and peer.confirmed.is_empty() and peer.gone != "left"

	## Birthday probing: the easy side's probes (a batch every BIRTHDAY_TICK_MS at most, within
	## the rate and the budget), the hard side's punches from every birthday socket.
	func _birthday_tick(now: int) -> void:
		var easy := _birthday_easy
		if not easy.is_empty():
			var peer: Dictionary = easy.peer
			if not _birthday_goes_on(peer):
				_birthday_easy = {}
			elif now >= easy.next_at:
				var allowed := mini(BIRTHDAY_PROBE_BUDGET,
						floori((now - easy.started_at) * BIRTHDAY_PROBE_RATE / 1000.0)
						+ floori(BIRTHDAY_PROBE_RATE * BIRTHDAY_TICK_MS / 1000.0))
				var address: String = peer.info.publicEndpoint.address
				while easy.sent < allowed:
					easy.sent += 1
					birthday_probes += 1
					_send_to(address, _rng.randi_range(1024, 65535), {"type": "punch",
							"requestId": _next_seq(), "from": _self_name, "to": peer.info.name,
							"candidate": BIRTHDAY_CANDIDATE, "sentAt": posmod(now, U32)})
				if easy.sent >= BIRTHDAY_PROBE_BUDGET:
					_birthday_easy = {}
				else:
					easy.next_at = now + BIRTHDAY_TICK_MS
		var hard := _birthday_hard
		if not hard.is_empty():
			var peer: Dictionary = hard.peer
			if not _birthday_goes_on(peer):
				_birthday_hard = {}
			elif now >= hard.next_at:
				hard.rounds += 1
				var to: Dictionary = peer.info.publicEndpoint
				for socket: int in hard.sockets:
					birthday_punches += 1
					_send_to(to.address, to.port, {"type": "punch", "requestId": _next_seq(),
							"from": _self_name, "to": peer.info.name, "candidate": 0,
							"sentAt": posmod(now, U32)}, socket)
				if hard.rounds >= BIRTHDAY_HARD_ROUNDS:
					_birthday_hard = {}
				else:
					hard.next_at = now + BIRTHDAY_HARD_INTERVAL_MS

	func _next_seq() -> int:
		_seq += 1
		return _seq - 1

	func _add_predictions() -> void:
		for name in _order:
			var peer: Dictionary = _peers[name]
			if not peer.confirmed.is_empty() or peer.predict != "late":
				continue
			var base: Dictionary = peer.info.publicEndpoint
			for d in range(1, PREDICT_PORT_RANGE + 1):
				for port: int in [base.port + d, base.port - d]:
					if port >= 1 and port <= 65535:
						_add_candidate(peer, base.address, port, "predicted")

	## Adds a candidate unless known; returns its index (-1 when the list is full). A
	## [param sweep] candidate is punched on every SWEEP_EVERY_ROUNDS-th round only.
	func _add_candidate(peer: Dictionary, address: String, port: int, kind: String,
			socket: int = MAIN_SOCKET, sweep: bool = false) -> int:
		var index := _index_of(peer, address, port, socket)
		if index >= 0:
			return index
		# The candidate index travels as a u8.
		if peer.candidates.size() >= 255:
			return -1
		peer.candidates.append({"address": address, "port": port, "kind": kind,
				"socket": socket, "sweep": sweep})
		return peer.candidates.size() - 1

	func _index_of(peer: Dictionary, address: String, port: int,
			socket: int = MAIN_SOCKET) -> int:
		for i in peer.candidates.size():
			var c: Dictionary = peer.candidates[i]
			if c.port == port and c.address == address and c.socket == socket:
				return i
		return -1
