extends SceneTree
## One "first hour" check of the addon (issue 21) against a real server, chosen by HP_CHECK
## (JSON: mode, server, port, code, and per mode more), printing one JSON line per event
## and a last {"check": MODE, "done": true, ...} line; test/godot4-first-hour.test.ts reads
## them. Modes:
##   properties   every property of the original plugin's README set, then a host and a
##                joiner punch: what the original's properties read afterwards
##   leave        a joiner leaves the lobby, then the host closes it: which signals each gets
##   resolve      rendevouz_address is a host name: whether start_traversal() sent anything
##                before it returned (it must not wait for DNS), then registering through it
##   unreachable  a server that never answers, with server_timeout_ms from HP_CHECK
##   wait_closed  a host registers and waits: the code it fails with (the test ends the
##                session from outside: server shutdown, or another host closes it)
##   close        a host and a joiner in a lobby; the host calls close_session(): the joiner's
##                code
##
##   HP_CHECK='{"mode":"leave",...}' godot --headless --path PROJECT \
##       --script res://tests/check_first_hour.gd

const HolePunchScript := preload("res://addons/holepunch/holepunch.gd")

var _c: Dictionary = {}
var _started_at: int = 0


func _init() -> void:
	_c = JSON.parse_string(OS.get_environment("HP_CHECK"))
	_started_at = Time.get_ticks_msec()
	var deadline := float(_c.get("deadline_s", 20))
	create_timer(deadline).timeout.connect(func() -> void: _end({"deadline": true}, 3))
	match String(_c.mode):
		"properties":
			_properties.call_deferred()
		"leave":
			_leave.call_deferred()
		"resolve":
			_resolve.call_deferred()
		"unreachable":
			_unreachable.call_deferred()
		"wait_closed":
			_wait_closed.call_deferred()
		"close":
			_close.call_deferred()


## A node as the docs' Install section has it, reporting every signal as a JSON line.
func _node(who: String) -> Node:
	var hp: Node = HolePunchScript.new()
	hp.name = "HolePunch_" + who
	hp.rendevouz_address = _c.get("server", "127.0.0.1")
	hp.rendevouz_port = int(_c.port)
	root.add_child(hp)
	hp.session_registered.connect(func() -> void: _line({"who": who, "event": "registered"}))
	hp.update_lobby.connect(func(names: PackedStringArray, _max: int) -> void:
		_line({"who": who, "event": "lobby", "players": Array(names)}))
	hp.return_unsuccessful.connect(func(message: String) -> void:
		_line({"who": who, "event": "return_unsuccessful", "message": message}))
	hp.traversal_failed.connect(func(code: String, message: String) -> void:
		_line({"who": who, "event": "failed", "code": code, "message": message}))
	hp.hole_punched.connect(func(my_port: int, hosts_port: int, hosts_address: String) -> void:
		_line({"who": who, "event": "punched", "my_port": my_port, "hosts_port": hosts_port,
				"hosts_address": hosts_address}))
	if hp.has_signal("session_left"):
		hp.connect("session_left", func(kind: String) -> void:
			_line({"who": who, "event": "session_left", "kind": kind}))
	return hp


func _properties() -> void:
	var host := _node("host")
	var joiner := _node("joiner")
	# The original plugin's README property table, each set as a ported game may set it.
	for hp: Node in [host, joiner]:
		hp.set("server_udp", PacketPeerUDP.new())
		hp.set("peer_udp", PacketPeerUDP.new())
		hp.set("client_name", "ignored")
		hp.set("rendevouz_address", "127.0.0.1")
		hp.set("host_address", "")
		hp.set("host_port", 0)
		hp.set("rendevouz_port", int(_c.port))
		hp.set("max_player_count", 2)
		hp.set("is_host", false)
		hp.set("local_testing", true)
	host.start_traversal(_c.code, true, "alice", "Alice")
	await host.session_registered
	joiner.start_traversal(_c.code, false, "bob", "Bob")
	var during := {}
	for hp: Node in [host, joiner]:
		during[hp.client_name] = hp.get("server_udp") != null and hp.get("peer_udp") != null
	await _both(host.hole_punched, joiner.hole_punched)
	var out := {"sockets_during": during}
	for pair: Array in [["host", host], ["joiner", joiner]]:
		var hp: Node = pair[1]
		out[pair[0]] = {"client_name": hp.client_name, "is_host": hp.is_host,
				"host_address": hp.host_address, "host_port": hp.host_port,
				"local_testing": hp.local_testing, "server_udp_after": hp.server_udp != null,
				"result_host_port": hp.last_result.host_port,
				"result_host_address": hp.last_result.host_address}
	_end(out, 0)


func _leave() -> void:
	var host := _node("host")
	var joiner := _node("joiner")
	host.max_player_count = 3
	host.start_traversal(_c.code, true, "alice", "Alice")
	await host.session_registered
	joiner.start_traversal(_c.code, false, "bob", "Bob")
	await joiner.session_registered
	joiner.client_disconnect()
	await create_timer(1.0).timeout
	host.close_session()
	await create_timer(1.0).timeout
	_end({}, 0)


func _resolve() -> void:
	var host := _node("host")
	host.rendevouz_address = _c.name
	var sent := [0]
	host.drop_datagram = func(direction: String, _a: String, _p: int, _d: PackedByteArray) -> bool:
		if direction == "out":
			sent[0] += 1
		return false
	var before := Time.get_ticks_usec()
	host.start_traversal(_c.code, true, "alice", "Alice")
	var call_us := Time.get_ticks_usec() - before
	var sent_during_call: int = sent[0]
	await host.session_registered
	_end({"sent_during_call": sent_during_call, "call_us": call_us,
			"server_ip": host.get("_server_ip")}, 0)


func _unreachable() -> void:
	var host := _node("host")
	if _c.has("server_timeout_ms"):
		host.set("server_timeout_ms", int(_c.server_timeout_ms))
	host.start_traversal(_c.code, true, "alice", "Alice")
	var failed: Array = await host.traversal_failed
	_end({"code": failed[0], "elapsed_ms": Time.get_ticks_msec() - _started_at}, 0)


func _wait_closed() -> void:
	var host := _node("host")
	host.max_player_count = 3
	host.start_traversal(_c.code, true, "alice", "Alice")
	await host.session_registered
	await create_timer(0.5).timeout
	_line({"who": "host", "event": "waiting"})
	var failed: Array = await host.traversal_failed
	_end({"code": failed[0], "message": failed[1]}, 0)


func _close() -> void:
	var host := _node("host")
	var joiner := _node("joiner")
	host.max_player_count = 3
	host.start_traversal(_c.code, true, "alice", "Alice")
	await host.session_registered
	joiner.start_traversal(_c.code, false, "bob", "Bob")
	await joiner.session_registered
	# Once the joiner proved its address (its first keepalive), the server pushes it the close.
	await create_timer(0.5).timeout
	host.close_session()
	var failed: Array = await joiner.traversal_failed
	_end({"code": failed[0], "message": failed[1]}, 0)


## Waits until both signals fired (in any order).
func _both(a: Signal, b: Signal) -> void:
	var fired := [false, false]
	a.connect(func(_x: Variant = null, _y: Variant = null, _z: Variant = null) -> void:
		fired[0] = true, CONNECT_ONE_SHOT)
	b.connect(func(_x: Variant = null, _y: Variant = null, _z: Variant = null) -> void:
		fired[1] = true, CONNECT_ONE_SHOT)
	while not (fired[0] and fired[1]):
		await process_frame


func _end(data: Dictionary, code: int) -> void:
	data.check = _c.get("mode", "")
	data.done = true
	_line(data)
	quit(code)


func _line(data: Dictionary) -> void:
	print(JSON.stringify(data))
