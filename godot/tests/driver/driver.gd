extends Node
## Drives the HolePunch addon through one traversal and, after hole_punched, the game's own
## transport on the released port; prints one JSON line per step for test/godot4-*.test.ts.
##
## Config: the environment variable HP_DRIVER (JSON): server, port, session, host, name,
## nickname, max_players, finalize_after_ms (host: finalize_peers this long after start),
## timeout_ms, deadline_ms (quit whatever happens), then:
##   after: "enet" (create_enet_peer, then an RPC round trip both ways with every peer; then
##          it stays until its peers say they are done too, at most LINGER_S, so ENet can
##          still retransmit what they are missing),
##          "udp_echo" (bind the released port with the game's own PacketPeerUDP and run the
##          holepunch-client CLI's hp-test ping/pong with every peer), or "none";
##   enet_redundancy (default 1: the addon's enet_redundancy; its forwarder's counts are
##          printed at the end);
##   use_relay (default true); nat_strategy (the addon's use_nat_strategy, left at its
##   default unless given);
##   drop_direct: the addon's socket drops every datagram to or
##          from anything but the server's main port and our relay ports, so no direct path
##          exists (the game's transport after hole_punched is not filtered);
##   keep_open_ms, member_silence_ms, session_wait_ms: the addon's properties of those names
##          (set only when given; set() so that an addon without them runs and is judged by
##          what it does);
##   expect_late: players this one waits to see join after hole_punched (peer_joined) before
##          it ends, and with "enet" on the host, that many more RPC round trips;
##   close_after_late_ms (host): close_session() this long after the last expected late
##          player joined; expect_ended: wait for session_ended before ending;
##   finalize_at_lobby (host): finalize_peers once the lobby has this many players.

const HolePunchScript := preload("res://addons/holepunch/holepunch.gd")
const TEST_PREFIX := "hp-test:"
## After its own RPC round trips, how long a player waits for its peers' (their "bye").
const LINGER_S := 15.0

var _config: Dictionary = {}
var _hp: Node = null
var _started_msec: int = 0
var _expected_peers: int = 0
var _pings_answered: Dictionary = {}
var _pongs: Dictionary = {}
var _udp: PacketPeerUDP = null
var _udp_peers: Array = []
var _udp_sent: int = 0
var _udp_next_at: int = 0
var _done: bool = false
var _rpc_ok: bool = false
var _byes: Dictionary = {}
var _late_wanted: int = 0
var _late_seen: int = 0
var _ended_seen: bool = false
var _closed: bool = false


func _ready() -> void:
	_started_msec = Time.get_ticks_msec()
	var parsed: Variant = JSON.parse_string(OS.get_environment("HP_DRIVER"))
	if typeof(parsed) != TYPE_DICTIONARY:
		_line({"godot": "error", "message": "HP_DRIVER is not a JSON object"})
		get_tree().quit(2)
		return
	_config = parsed
	_hp = HolePunchScript.new()
	_hp.rendevouz_address = str(_config.server)
	_hp.rendevouz_port = int(_config.port)
	_hp.max_player_count = int(_config.get("max_players", 2))
	_hp.traversal_timeout_ms = int(_config.get("timeout_ms", 20000))
	_hp.use_relay = bool(_config.get("use_relay", true))
	if _config.has("nat_strategy"):
		_hp.use_nat_strategy = bool(_config.nat_strategy)
	_hp.enet_redundancy = int(_config.get("enet_redundancy", 1))
	for property: String in ["keep_open_ms", "member_silence_ms", "session_wait_ms"]:
		if _config.has(property):
			_hp.set(property, int(_config[property]))
	_late_wanted = int(_config.get("expect_late", 0))
	if bool(_config.get("drop_direct", false)):
		_hp.drop_datagram = func(_direction: String, address: String, port: int,
				_data: PackedByteArray) -> bool:
			return not _hp.is_server_endpoint(address, port)
	add_child(_hp)
	_hp.session_registered.connect(func() -> void:
		_signal("session_registered", [])
		_line({"godot": "nat", "nat": _hp.nat_class}))
	_hp.update_lobby.connect(func(nicknames: PackedStringArray, max_players: int) -> void:
		_signal("update_lobby", [Array(nicknames), max_players])
		if nicknames.size() == int(_config.get("finalize_at_lobby", 0)):
			_line({"godot": "call", "call": "finalize_peers"})
			_hp.finalize_peers())
	_hp.return_unsuccessful.connect(func(message: String) -> void:
		_signal("return_unsuccessful", [message]))
	_hp.traversal_failed.connect(_on_failed)
	if _hp.has_signal("peer_joined"):
		_hp.connect("peer_joined", func(peer: Dictionary) -> void:
				_on_late_signal("peer_joined", [peer]))
		_hp.connect("peer_failed", func(peer: Dictionary) -> void:
				_on_late_signal("peer_failed", [peer]))
		_hp.connect("peer_left", func(player_name: String, why: String) -> void:
				_on_late_signal("peer_left", [player_name, why]))
		_hp.connect("session_ended", func(code: String, message: String) -> void:
				_on_late_signal("session_ended", [code, message]))
	_hp.hole_punched.connect(_on_hole_punched)
	_line({"godot": "ready", "engine": Engine.get_version_info()["string"]})
	get_tree().create_timer(float(_config.get("deadline_ms", 30000)) / 1000.0).timeout.connect(
			func() -> void: _end("done", 0) if _rpc_ok else _end("deadline", 3))
	_started_msec = Time.get_ticks_msec()
	_hp.start_traversal(str(_config.session), bool(_config.host), str(_config.name),
			str(_config.get("nickname", _config.name)))
	_line({"godot": "started"})
	if _config.has("finalize_after_ms"):
		get_tree().create_timer(float(_config.finalize_after_ms) / 1000.0).timeout.connect(
				func() -> void:
					_line({"godot": "call", "call": "finalize_peers"})
					_hp.finalize_peers())


func _on_late_signal(signal_name: String, args: Array) -> void:
	_signal(signal_name, args)
	if signal_name == "session_ended":
		_ended_seen = true
		_maybe_finish()
	if signal_name == "peer_joined":
		_late_seen += 1
		if _late_seen >= _late_wanted and _config.has("close_after_late_ms"):
			get_tree().create_timer(float(_config.close_after_late_ms) / 1000.0).timeout.connect(
					func() -> void:
						_line({"godot": "call", "call": "close_session"})
						_hp.close_session()
						_closed = true
						_maybe_finish())
		_maybe_finish()


func _on_failed(code: String, message: String) -> void:
	_signal("traversal_failed", [code, message])
	_end("failed", 1)


func _on_hole_punched(my_port: int, hosts_port: int, hosts_address: String) -> void:
	var elapsed := Time.get_ticks_msec() - _started_msec
	_signal("hole_punched", [my_port, hosts_port, hosts_address])
	var result: Dictionary = _hp.last_result
	_line({"godot": "punched", "elapsed_ms": elapsed, "result": result})
	_expected_peers = result.peers.size()
	if bool(_config.get("host", false)):
		_expected_peers += _late_wanted
	match str(_config.get("after", "enet")):
		"enet":
			_start_enet()
		"udp_echo":
			_start_udp_echo(my_port, result.peers)
		_:
			_end("done", 0)


func _start_enet() -> void:
	var started := Time.get_ticks_msec()
	var peer: ENetMultiplayerPeer = _hp.create_enet_peer()
	if peer == null:
		_line({"godot": "enet", "error": "create_enet_peer failed"})
		_end("enet_failed", 1)
		return
	multiplayer.peer_connected.connect(func(id: int) -> void:
		_line({"godot": "enet_peer_connected", "id": id,
				"ms": Time.get_ticks_msec() - started})
		if multiplayer.is_server():
			_ping.rpc_id(id, multiplayer.get_unique_id(), Time.get_ticks_msec()))
	multiplayer.connected_to_server.connect(func() -> void:
		_line({"godot": "enet_connected", "ms": Time.get_ticks_msec() - started})
		_ping.rpc_id(1, multiplayer.get_unique_id(), Time.get_ticks_msec()))
	multiplayer.connection_failed.connect(func() -> void:
		_line({"godot": "enet", "error": "connection_failed"})
		_end("enet_failed", 1))
	multiplayer.server_disconnected.connect(func() -> void:
		_line({"godot": "enet", "event": "server_disconnected"})
		_end("done" if _rpc_ok else "enet_failed", 0 if _rpc_ok else 1))
	multiplayer.multiplayer_peer = peer
	_line({"godot": "enet_started", "server": multiplayer.is_server()})
	# An RPC sent the moment a peer connects can be dropped before the remote's multiplayer
	# knows the sender (seen at 30 % loss): ping again every second until it is answered.
	var timer := Timer.new()
	timer.wait_time = 1.0
	timer.timeout.connect(_reping)
	add_child(timer)
	timer.start()


func _reping() -> void:
	if _done or multiplayer.multiplayer_peer == null:
		return
	var targets: Array = Array(multiplayer.get_peers()) if multiplayer.is_server() else [1]
	for id: int in targets:
		if not _pongs.has(id):
			_ping.rpc_id(id, multiplayer.get_unique_id(), Time.get_ticks_msec())


@rpc("any_peer", "call_remote", "reliable")
func _ping(from_id: int, sent_at: int) -> void:
	var sender := multiplayer.get_remote_sender_id()
	_pings_answered[sender] = true
	_pong.rpc_id(sender, multiplayer.get_unique_id(), sent_at)
	_line({"godot": "rpc_ping", "from": from_id})
	_check_enet_done()


@rpc("any_peer", "call_remote", "reliable")
func _pong(from_id: int, sent_at: int) -> void:
	_pongs[from_id] = Time.get_ticks_msec() - sent_at
	_line({"godot": "rpc_pong", "from": from_id, "rtt_ms": _pongs[from_id]})
	_check_enet_done()


func _check_enet_done() -> void:
	# The host talks to every joiner; a joiner talks to the host only (ENet is a star).
	var wanted := _expected_peers if multiplayer.is_server() else 1
	if _pongs.size() >= wanted and _pings_answered.size() >= wanted and not _rpc_ok:
		_rpc_ok = true
		_line({"godot": "rpc_ok", "pongs": _pongs.size(), "pings": _pings_answered.size()})
		# Stay until the peers are done too: our last pong may still be retransmitted (ENet
		# waits longer after each loss), and quitting would drop it. At most LINGER_S.
		if multiplayer.is_server():
			_bye.rpc()
		else:
			_bye.rpc_id(1)
		get_tree().create_timer(LINGER_S).timeout.connect(func() -> void:
				if _late_done():
					_end("done", 0))
		_maybe_finish()


## A peer got its round trips: it may quit once we have ours.
@rpc("any_peer", "call_remote", "reliable")
func _bye() -> void:
	_byes[multiplayer.get_remote_sender_id()] = true
	_maybe_finish()


func _maybe_finish() -> void:
	if not _late_done():
		return
	var done := _byes.size() >= _expected_peers if multiplayer.is_server() else _byes.has(1)
	if _rpc_ok and done:
		_end("done", 0, 1.0)


## Every late player expected has joined, the session's end came if it was to be waited for,
## and the host closed it if it was to.
func _late_done() -> bool:
	return _late_seen >= _late_wanted \
			and (_ended_seen or not bool(_config.get("expect_ended", false))) \
			and (_closed or not _config.has("close_after_late_ms"))


func _start_udp_echo(port: int, peers: Array) -> void:
	_udp = PacketPeerUDP.new()
	var err := _udp.bind(port, "*")
	_line({"godot": "udp_bound", "port": port, "ok": err == OK})
	if err != OK:
		_end("bind_failed", 1)
		return
	_udp_peers = peers


func _process(_delta: float) -> void:
	if _udp == null:
		return
	var now := Time.get_ticks_msec()
	while _udp.get_available_packet_count() > 0:
		var text := _udp.get_packet().get_string_from_utf8()
		var ip := _udp.get_packet_ip()
		var port := _udp.get_packet_port()
		if not text.begins_with(TEST_PREFIX):
			continue
		var parts := text.split(":")
		if parts.size() < 4:
			continue
		if parts[1] == "ping":
			_udp.set_dest_address(ip, port)
			_udp.put_packet(("%spong:%s:%s" % [TEST_PREFIX, parts[2], _config.name]).to_utf8_buffer())
		elif parts[1] == "pong":
			var who := ":".join(parts.slice(3))
			_pongs[who] = int(_pongs.get(who, 0)) + 1
	if now >= _udp_next_at and _udp_sent < 30:
		_udp_next_at = now + 100
		for p: Dictionary in _udp_peers:
			_udp.set_dest_address(p.address, p.port)
			_udp.put_packet(("%sping:%d:%s" % [TEST_PREFIX, _udp_sent, _config.name]).to_utf8_buffer())
		_udp_sent += 1
	var all := true
	for p: Dictionary in _udp_peers:
		if int(_pongs.get(p.name, 0)) < 3:
			all = false
	if (all or _udp_sent >= 30) and not _done:
		_line({"godot": "udp_test", "pongs": _pongs, "ok": all})
		# Keep answering the peer's pings a while: it may have started its test later.
		_end("done" if all else "udp_failed", 0 if all else 1, 2.0)


func _signal(signal_name: String, args: Array) -> void:
	_line({"godot": "signal", "signal": signal_name, "args": args,
			"ms": Time.get_ticks_msec() - _started_msec})


func _end(reason: String, code: int, grace_s: float = 0.3) -> void:
	if _done:
		return
	_done = true
	_line({"godot": "end", "reason": reason, "code": code})
	await get_tree().create_timer(grace_s).timeout
	if _hp.enet_redundancy > 1:
		_line({"godot": "redundancy", "stats": _hp.get_redundancy_stats()})
	multiplayer.multiplayer_peer = null
	get_tree().quit(code)


func _line(data: Dictionary) -> void:
	print(JSON.stringify(data))
