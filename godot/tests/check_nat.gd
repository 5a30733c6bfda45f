extends SceneTree
## Checks the addon's NAT classification and strategy (holepunch_traversal.gd) without a
## network: a fake server answers the classification probes, and the test reads what the
## traversal sends. The expectations come from the TypeScript core (HP_NAT_EXPECT, JSON:
## constants, classes [[main_port, alt_port, class]], strategies [[own, peer, peers, strategy]]),
## so both clients follow the one spec (docs/protocol-v2.md section 6, "Strategy").
## Prints one JSON line per failure and a last summary line; exits 0 when all pass.
##
##   HP_NAT_EXPECT='{...}' godot --headless --path PROJECT --script res://tests/check_nat.gd

const Traversal := preload("res://addons/holepunch/holepunch_traversal.gd")
const Codec := preload("res://addons/holepunch/holepunch_codec.gd")
const SERVER := "203.0.113.1"
const SERVER_PORT := 4000
const ALT_PORT := 4001
const PEER := "198.51.100.7"
const PEER_PORT := 40000

var _passed := 0
var _failed := 0
## Every datagram the traversal under test sent: {socket, address, port, msg}.
var _sent: Array[Dictionary] = []
var _opened: Array[int] = []
var _closed: Array[int] = []
var _events: Array[Dictionary] = []


func _init() -> void:
	var expect: Variant = JSON.parse_string(OS.get_environment("HP_NAT_EXPECT"))
	if typeof(expect) != TYPE_DICTIONARY:
		_line({"godot": "nat", "error": "HP_NAT_EXPECT is not a JSON object"})
		quit(2)
		return
	var script: Script = load("res://addons/holepunch/holepunch_traversal.gd")
	var constants := script.get_script_constant_map()
	for name: String in expect.constants:
		var ours: Variant = constants.get(name)
		var same := ours != null and is_equal_approx(float(ours), float(expect.constants[name]))
		_check("constant " + name, same, {"gdscript": ours, "typescript": expect.constants[name]})
	for c: Array in expect.classes:
		var got := Traversal.nat_class_of(int(c[0]), int(c[1]))
		_check("nat_class_of(%d, %d)" % [c[0], c[1]], got == c[2], {"got": got, "want": c[2]})
	for c: Array in expect.strategies:
		var got := Traversal.peer_strategy(c[0], c[1], int(c[2]))
		_check("peer_strategy(%s, %s, %d)" % [c[0], c[1], c[2]], got == c[3],
				{"got": got, "want": c[3]})
	for c: Array in [[40000, 40000, "eim"], [40000, 40003, "edm-sequential"],
			[40000, 51234, "edm-random"]]:
		_check_sends_measured_class(int(c[0]), int(c[1]), c[2])
	_check_no_alternate_port()
	_check_silent_server()
	_check_off()
	_check_birthday_hard()
	_check_birthday_easy()
	_check_sweep()
	_line({"godot": "nat", "passed": _passed, "failed": _failed,
			"engine": Engine.get_version_info()["string"]})
	quit(0 if _failed == 0 else 1)


## Both probes answered: the host request carries the class the two public ports make.
func _check_sends_measured_class(main_port: int, alt_port: int, want: String) -> void:
	var t := _traversal({"classify_nat": true})
	t.start(0)
	var first := _only_sent("probe")
	_check("first probe to the main port", first.size() == 1 and first[0].port == SERVER_PORT,
			{"sent": first})
	if first.is_empty():
		return
	_sent.clear()
	t.handle(3, SERVER, SERVER_PORT, _probe_reply(first[0].msg.requestId, main_port, ALT_PORT))
	var provokes := _only_sent("probe")
	_check("then %d probes asking for an answer from the alternate port" % Traversal.COLLIDE_PROBES,
			provokes.size() == Traversal.COLLIDE_PROBES and provokes.all(
				func(d: Dictionary) -> bool:
					return d.port == SERVER_PORT and d.msg.changePort and not d.msg.changeAddress),
			{"sent": provokes})
	_sent.clear()
	# The main probe's round trip was 3 ms.
	var alt_at := 3 + mini(Traversal.COLLIDE_WAIT_MAX_MS,
			Traversal.CLASSIFY_RETRY_MS + roundi(Traversal.COLLIDE_WAIT_RTTS * 3))
	t.handle_timeout(alt_at - 1)
	_check("no probe to the alternate port before that answer had time to arrive",
			_only_sent("probe").is_empty(), {"sent": _sent})
	t.handle_timeout(alt_at)
	var second := _only_sent("probe")
	_check("second probe to the alternate port", second.size() == 1 \
			and second[0].port == ALT_PORT, {"sent": second})
	if second.is_empty():
		return
	_sent.clear()
	t.handle(alt_at + 3, SERVER, ALT_PORT,
			_probe_reply(second[0].msg.requestId, alt_port, ALT_PORT))
	var host := _only_sent("host")
	_check("registers at once with nat %s" % want, host.size() == 1 \
			and host[0].msg.get("nat", "unknown") == want and t.nat == want,
			{"sent": host, "nat": t.nat})


func _check_no_alternate_port() -> void:
	var t := _traversal({"classify_nat": true})
	t.start(0)
	var first := _only_sent("probe")
	_sent.clear()
	t.handle(2, SERVER, SERVER_PORT, _probe_reply(first[0].msg.requestId, 40000, 0))
	var host := _only_sent("host")
	_check("no alternate port: registers at once, unknown", host.size() == 1 \
			and not host[0].msg.has("nat") and t.nat == "unknown", {"sent": host})


## Nobody answers: probes every CLASSIFY_RETRY_MS, at most CLASSIFY_MAX_PROBES, and the
## registration goes out at CLASSIFY_WITHIN_MS with "unknown".
func _check_silent_server() -> void:
	var t := _traversal({"classify_nat": true})
	t.start(0)
	var registered_at := -1
	for now in range(1, Traversal.CLASSIFY_WITHIN_MS + 2):
		t.handle_timeout(now)
		if registered_at < 0 and not _only_sent("host").is_empty():
			registered_at = now
	var probes := _only_sent("probe").size()
	_check("a silent server: at most %d probes" % Traversal.CLASSIFY_MAX_PROBES,
			probes >= 2 and probes <= Traversal.CLASSIFY_MAX_PROBES, {"probes": probes})
	_check("a silent server: registers by %d ms, unknown" % Traversal.CLASSIFY_WITHIN_MS,
			registered_at >= 0 and registered_at <= Traversal.CLASSIFY_WITHIN_MS \
			and not _only_sent("host")[0].msg.has("nat"), {"registered_at": registered_at})


func _check_off() -> void:
	var t := _traversal({"classify_nat": false})
	t.start(0)
	_check("classify_nat false: no probe, registers at once", _only_sent("probe").is_empty() \
			and _only_sent("host").size() == 1, {"sent": _sent.size()})


## edm-random against an eim peer, two players: BIRTHDAY_SOCKETS sockets each punch the
## peer's public endpoint; an ack on one of them confirms the peer with path "birthday", that
## socket is the game's, one a late punch reaches is kept, and every other one is closed when
## the punch's linger ends.
func _check_birthday_hard() -> void:
	var key := _bytes(16, 7)
	var t := _to_punching("edm-random", "eim", key)
	var strategy: String = t.strategies.get("bob", "")
	_check("birthday-hard chosen", strategy == "birthday-hard", {"strategy": strategy})
	_check("birthday-hard opens %d sockets" % Traversal.BIRTHDAY_SOCKETS,
			_opened.size() == Traversal.BIRTHDAY_SOCKETS, {"opened": _opened.size()})
	var from_sockets := {}
	for d: Dictionary in _sent:
		if d.socket != Traversal.MAIN_SOCKET and d.address == PEER and d.port == PEER_PORT:
			from_sockets[d.socket] = true
	_check("every birthday socket punches the peer's public endpoint",
			from_sockets.size() == Traversal.BIRTHDAY_SOCKETS, {"sockets": from_sockets.size()})
	var ack := Codec.encode_punch(key, {"type": "punch_ack", "requestId": 9, "from": "bob",
			"to": "alice", "candidate": 0, "sentAt": 0})
	t.handle(300, PEER, 51000, ack, 42)
	var punched := _event("punched")
	var path: String = punched.peers[0].path if not punched.is_empty() else ""
	_check("an ack on birthday socket 42 confirms the peer with path birthday",
			path == "birthday", {"event": punched})
	_check("socket 42 is the game's, the others stay open while the peer may punch them",
			t.game_socket == 42 and _closed.is_empty(),
			{"game_socket": t.game_socket, "closed": _closed.size()})
	# The peer punches back the first mappings it heard from, here socket 40's: it is kept.
	_sent.clear()
	var punch := Codec.encode_punch(key, {"type": "punch", "requestId": 10, "from": "bob",
			"to": "alice", "candidate": 3, "sentAt": 0})
	t.handle(1000, PEER, 51001, punch, 40)
	var acked := _sent.filter(func(d: Dictionary) -> bool:
		return d.socket == 40 and d.msg.type == "punch_ack")
	_check("a late punch on socket 40 is acked from there", acked.size() == 1, {"sent": _sent})
	var close_at := 300 + Traversal.PUNCH_LINGER_MS
	t.handle_timeout(close_at - 1)
	_check("nothing closes before the linger ends", _closed.is_empty(), {"closed": _closed})
	t.handle_timeout(close_at)
	_check("then every socket the peer did not reach closes", t.game_socket == 42 \
			and _closed.size() == Traversal.BIRTHDAY_SOCKETS - 2 and not _closed.has(42) \
			and not _closed.has(40), {"closed": _closed.size()})


## eim against an edm-random peer: probes with candidate 255 to random ports of its address,
## within the rate and the budget; an ack that echoes 255 confirms it with path "birthday".
func _check_birthday_easy() -> void:
	var key := _bytes(16, 9)
	var t := _to_punching("eim", "edm-random", key)
	for now in range(1, 1001):
		t.handle_timeout(now)
	var probes := _probes()
	var most := Traversal.BIRTHDAY_PROBE_RATE + Traversal.BIRTHDAY_PROBE_RATE \
			* Traversal.BIRTHDAY_TICK_MS / 1000
	_check("birthday-easy: at most %d probes in the first second" % most,
			probes > Traversal.BIRTHDAY_PROBE_RATE / 2 and probes <= most, {"probes": probes})
	for now in range(1001, 7001, 5):
		t.handle_timeout(now)
	probes = _probes()
	_check("birthday-easy: %d probes in all" % Traversal.BIRTHDAY_PROBE_BUDGET,
			probes == Traversal.BIRTHDAY_PROBE_BUDGET, {"probes": probes})
	var ack := Codec.encode_punch(key, {"type": "punch_ack", "requestId": 9, "from": "bob",
			"to": "alice", "candidate": Traversal.BIRTHDAY_CANDIDATE, "sentAt": 0})
	t.handle(7001, PEER, 61234, ack)
	var punched := _event("punched")
	var path: String = punched.peers[0].path if not punched.is_empty() else ""
	_check("an ack echoing candidate 255 confirms the peer with path birthday",
			path == "birthday" and punched.peers[0].port == 61234, {"event": punched})


## eim against an edm-sequential peer: +-SWEEP_PORT_RANGE ports at once, then every
## SWEEP_EVERY_ROUNDS-th round.
func _check_sweep() -> void:
	var t := _to_punching("eim", "edm-sequential", _bytes(16, 3))
	var swept := {}
	for d: Dictionary in _sent:
		if d.address == PEER and d.port != PEER_PORT:
			swept[d.port] = true
	var all_in_range := true
	for port: int in swept:
		all_in_range = all_in_range and absi(port - PEER_PORT) <= Traversal.SWEEP_PORT_RANGE
	_check("sequential-easy sweeps %d ports at once" % (2 * Traversal.SWEEP_PORT_RANGE),
			swept.size() == 2 * Traversal.SWEEP_PORT_RANGE and all_in_range,
			{"ports": swept.size()})
	var per_round: Array[int] = []
	# The peer list came at 2 ms and punched its first round (the sweep's first) then.
	var now := 2
	for i in Traversal.SWEEP_EVERY_ROUNDS:
		_sent.clear()
		now += Traversal.PUNCH_INTERVAL_MS
		t.handle_timeout(now)
		per_round.append(_sent.size())
	_check("the sweep goes out on every %dth round only" % Traversal.SWEEP_EVERY_ROUNDS,
			per_round.slice(0, -1).max() < Traversal.SWEEP_PORT_RANGE
			and per_round[-1] >= 2 * Traversal.SWEEP_PORT_RANGE, {"per_round": per_round})


## A traversal (alice, hosting) whose own class is [param own], registered, then given the
## peer bob of class [param peer]: it is punching afterwards.
func _to_punching(own: String, peer: String, key: PackedByteArray) -> Traversal:
	var t := _traversal({"classify_nat": false})
	t.nat = own
	t.start(0)
	var token := _bytes(16, 1)
	var host := _only_sent("host")
	t.handle(1, SERVER, SERVER_PORT, Codec.encode({"type": "registered",
			"requestId": host[0].msg.requestId, "token": token,
			"observed": {"address": "192.0.2.9", "port": 50000}}))
	var bob := {"name": "bob", "nickname": "bob", "isHost": false,
			"publicEndpoint": {"address": PEER, "port": PEER_PORT}, "candidates": []}
	if peer != "unknown":
		bob.nat = peer
	_sent.clear()
	t.handle(2, SERVER, SERVER_PORT, Codec.encode({"type": "peers", "requestId": 0,
			"punchKey": key, "token": token, "observed": {"address": "192.0.2.9", "port": 50000},
			"total": 1, "first": 0, "peers": [bob]}))
	_check("%s vs %s: punching" % [own, peer], t.state == "punching", {"state": t.state})
	return t


func _traversal(extra: Dictionary) -> Traversal:
	_sent.clear()
	_opened.clear()
	_closed.clear()
	_events.clear()
	var options := {"server_address": SERVER, "server_port": SERVER_PORT, "session": "s",
			"is_host": true, "name": "alice", "nickname": "alice", "max_players": 2,
			"relay": false}
	options.merge(extra, true)
	var t := Traversal.new(options)
	t.send = func(address: String, port: int, data: PackedByteArray) -> void:
		_record(Traversal.MAIN_SOCKET, address, port, data)
	t.send_from = _record
	t.open_socket = func(socket: int) -> bool:
		_opened.append(socket)
		return true
	t.close_socket = func(socket: int) -> void: _closed.append(socket)
	t.on_event = func(event: Dictionary) -> void: _events.append(event)
	return t


func _record(socket: int, address: String, port: int, data: PackedByteArray) -> void:
	var decoded := Codec.decode(data)
	_sent.append({"socket": socket, "address": address, "port": port,
			"msg": decoded.msg if decoded.ok else {}})


func _only_sent(type_name: String) -> Array[Dictionary]:
	var out: Array[Dictionary] = []
	for d: Dictionary in _sent:
		if d.msg.get("type", "") == type_name:
			out.append(d)
	return out


## Birthday probes sent so far (candidate 255, to the peer's address).
func _probes() -> int:
	var n := 0
	for d: Dictionary in _sent:
		if d.address == PEER and d.msg.get("candidate", -1) == Traversal.BIRTHDAY_CANDIDATE:
			n += 1
	return n


func _event(type_name: String) -> Dictionary:
	for e: Dictionary in _events:
		if e.type == type_name:
			return e
	return {}


func _probe_reply(request_id: int, observed_port: int, alt_port: int) -> PackedByteArray:
	return Codec.encode({"type": "probe_reply", "requestId": request_id,
			"observed": {"address": "192.0.2.9", "port": observed_port}, "altAddress": "",
			"altPort": alt_port})


func _bytes(size: int, fill: int) -> PackedByteArray:
	var out := PackedByteArray()
	out.resize(size)
	out.fill(fill)
	return out


func _check(name: String, ok: bool, detail: Dictionary) -> void:
	if ok:
		_passed += 1
		return
	_failed += 1
	_line({"godot": "nat_failed", "check": name, "detail": detail})


func _line(obj: Dictionary) -> void:
	print(JSON.stringify(obj))
