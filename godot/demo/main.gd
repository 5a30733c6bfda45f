extends Node2D
## HolePunch demo: host or join a session by code, watch the lobby, start, then every player
## moves a square (arrow keys) and sees the others' squares, over ENet RPCs on the punched
## path. Everything is built in code so the scene stays one node.
##
## Headless autoplay (a test runs it): user arguments after "--":
##   --autoplay=host|join --code=CODE --server=HOST:PORT [--name=NAME] [--players=N]
## hosts or joins, starts when the lobby is full, moves its square, prints JSON lines, and
## quits 0 once it saw every other player's square move (1 on failure, 3 on its deadline).

const HolePunchScript := preload("res://addons/holepunch/holepunch.gd")
const COLORS: Array[Color] = [Color.TOMATO, Color.SKY_BLUE, Color.GOLD, Color.LIME_GREEN]
const SPEED := 200.0

var _hp: Node = null
var _auto: Dictionary = {}
var _squares: Dictionary = {}
var _seen_moving: Dictionary = {}
var _playing: bool = false
var _auto_t: float = 0.0
var _expected: int = 0
var _done: bool = false

var _server_edit := LineEdit.new()
var _code_edit := LineEdit.new()
var _name_edit := LineEdit.new()
var _status := Label.new()
var _players := ItemList.new()
var _start_button := Button.new()
var _ui := VBoxContainer.new()


func _ready() -> void:
	_auto = _parse_user_args()
	_hp = HolePunchScript.new()
	_hp.traversal_timeout_ms = 60000
	add_child(_hp)
	_hp.session_registered.connect(func() -> void: _set_status("Registered, waiting..."))
	_hp.update_lobby.connect(_on_lobby)
	_hp.traversal_failed.connect(_on_failed)
	_hp.hole_punched.connect(_on_hole_punched)
	_build_ui()
	if not _auto.is_empty():
		_line({"demo": "autoplay", "role": _auto.get("autoplay")})
		var deadline := float(_auto.get("deadline", "40"))
		get_tree().create_timer(deadline).timeout.connect(func() -> void: _quit("deadline", 3))
		_server_edit.text = _auto.get("server", "127.0.0.1:4000")
		_code_edit.text = _auto.get("code", "demo")
		_name_edit.text = _auto.get("name", _auto.get("autoplay", "player"))
		_hp.max_player_count = int(_auto.get("players", "2"))
		_begin(_auto.get("autoplay") == "host")


func _build_ui() -> void:
	_ui.position = Vector2(16, 16)
	add_child(_ui)
	_server_edit.text = "127.0.0.1:4000"
	_server_edit.placeholder_text = "server host:port"
	_code_edit.placeholder_text = "session code"
	_name_edit.placeholder_text = "your name"
	_name_edit.text = "player%d" % (randi() % 1000)
	var buttons := HBoxContainer.new()
	var host_button := Button.new()
	host_button.text = "Host"
	host_button.pressed.connect(_begin.bind(true))
	var join_button := Button.new()
	join_button.text = "Join"
	join_button.pressed.connect(_begin.bind(false))
	_start_button.text = "Start"
	_start_button.disabled = true
	_start_button.pressed.connect(func() -> void: _hp.finalize_peers())
	buttons.add_child(host_button)
	buttons.add_child(join_button)
	buttons.add_child(_start_button)
	_players.custom_minimum_size = Vector2(240, 90)
	for child: Control in [_server_edit, _code_edit, _name_edit, buttons, _players, _status]:
		_ui.add_child(child)


func _begin(as_host: bool) -> void:
	var parts := _server_edit.text.rsplit(":", true, 1)
	_hp.rendevouz_address = parts[0]
	_hp.rendevouz_port = int(parts[1]) if parts.size() > 1 else 4000
	_start_button.disabled = not as_host
	_set_status("Contacting the server...")
	_hp.start_traversal(_code_edit.text, as_host, _name_edit.text, _name_edit.text)


func _on_lobby(nicknames: PackedStringArray, max_players: int) -> void:
	_players.clear()
	for n in nicknames:
		_players.add_item(n)
	_set_status("Lobby %d/%d" % [nicknames.size(), max_players])
	_line({"demo": "lobby", "players": Array(nicknames)})
	# Autoplay: the server starts a full session by itself; a host could call
	# finalize_peers() here to start with fewer players.


func _on_failed(code: String, message: String) -> void:
	_set_status("Failed (%s): %s" % [code, message])
	_line({"demo": "failed", "code": code, "message": message})
	if not _auto.is_empty():
		_quit("failed", 1)


func _on_hole_punched(_my_port: int, _hosts_port: int, _hosts_address: String) -> void:
	_expected = _hp.last_result.peers.size()
	_line({"demo": "punched", "elapsed_ms": _hp.last_result.elapsed_ms, "peers": _expected})
	var peer: ENetMultiplayerPeer = _hp.create_enet_peer()
	if peer == null:
		_on_failed("socket_error", "ENet could not use the punched port")
		return
	multiplayer.multiplayer_peer = peer
	_ui.visible = false
	# The host's ENet server is up at once; a joiner's client is "connecting" until the host
	# answers, and an RPC sent before connected_to_server goes nowhere (Godot prints an error).
	# So a joiner plays from connected_to_server on.
	multiplayer.peer_connected.connect(func(_id: int) -> void: _announce())
	if _hp.is_host:
		_play()
	else:
		_set_status("Connecting to the host...")
		multiplayer.connected_to_server.connect(_play)
		multiplayer.connection_failed.connect(
				_on_failed.bind("socket_error", "ENet could not connect to the host"))
		multiplayer.server_disconnected.connect(_on_host_gone)


func _play() -> void:
	_playing = true
	_add_square(multiplayer.get_unique_id(), _name_edit.text)
	_announce()


func _on_host_gone() -> void:
	_playing = false
	_set_status("The host left.")
	_line({"demo": "host_gone"})


func _announce() -> void:
	if _connected():
		_add_square.rpc(multiplayer.get_unique_id(), _name_edit.text)


## Whether RPCs can go out now (a peer set and connected).
func _connected() -> bool:
	var peer := multiplayer.multiplayer_peer
	return peer != null and not peer is OfflineMultiplayerPeer \
			and peer.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED


@rpc("any_peer", "call_local", "reliable")
func _add_square(id: int, player_name: String) -> void:
	if _squares.has(id):
		return
	var square := ColorRect.new()
	square.size = Vector2(32, 32)
	square.color = COLORS[_squares.size() % COLORS.size()]
	square.position = Vector2(80 + 60 * _squares.size(), 200)
	var label := Label.new()
	label.text = player_name
	label.position = Vector2(0, -24)
	square.add_child(label)
	add_child(square)
	_squares[id] = square
	_set_status("Playing with %d" % _squares.size())


@rpc("any_peer", "call_remote", "unreliable_ordered")
func _move_to(position_: Vector2) -> void:
	var id := multiplayer.get_remote_sender_id()
	if not _squares.has(id):
		return
	_squares[id].position = position_
	if not _seen_moving.has(id):
		_seen_moving[id] = true
		_line({"demo": "saw_move", "from": id})


func _process(delta: float) -> void:
	if not _playing or not _connected():
		return
	var me := multiplayer.get_unique_id()
	if not _squares.has(me):
		return
	var dir := Input.get_vector("ui_left", "ui_right", "ui_up", "ui_down")
	if not _auto.is_empty():
		_auto_t += delta
		dir = Vector2(cos(_auto_t * 3.0), sin(_auto_t * 3.0))
	if dir != Vector2.ZERO:
		_squares[me].position += dir * SPEED * delta
		_move_to.rpc(_squares[me].position)
	if not _auto.is_empty() and _seen_moving.size() >= _expected and not _done:
		_line({"demo": "ok", "squares": _squares.size(), "saw_moving": _seen_moving.size()})
		_quit("done", 0, 1.5)


func _set_status(text: String) -> void:
	_status.text = text


func _parse_user_args() -> Dictionary:
	var out := {}
	for arg in OS.get_cmdline_user_args():
		if arg.begins_with("--") and arg.contains("="):
			var kv := arg.substr(2).split("=", true, 1)
			out[kv[0]] = kv[1]
	return out


func _quit(reason: String, code: int, grace_s: float = 0.2) -> void:
	if _done and reason == "deadline":
		return
	_done = true
	_line({"demo": "end", "reason": reason, "code": code})
	await get_tree().create_timer(grace_s).timeout
	# Stop playing first: _process must not touch the multiplayer API once the peer is gone.
	_playing = false
	if multiplayer.multiplayer_peer != null:
		multiplayer.multiplayer_peer.close()
	multiplayer.multiplayer_peer = null
	get_tree().quit(code)


func _line(data: Dictionary) -> void:
	if not _auto.is_empty():
		print(JSON.stringify(data))
