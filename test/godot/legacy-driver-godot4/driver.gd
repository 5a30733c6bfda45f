extends Node
# Drives an original HolePunch plugin (addons/Holepunch/holepunch_node.gd) through one flow
# and prints one JSON line per plugin signal, for test/godot-interop.test.ts.
#
# The flow comes from the environment variable HP_DRIVER (JSON):
#   api: "lobby" (start_traversal with nickname, finalize_peers()) or "master"
#       (start_traversal without nickname, finalize_peers(id), checkout())
#   server, port, session, host, name, nickname: the start_traversal arguments
#   start_ms: wait this long before start_traversal
#   actions: [{on, n, delay_ms, do}]: `delay_ms` after the n-th signal `on` (or after
#       the start when `on` is "start"), call finalize_peers, client_disconnect,
#       close_session, checkout, or quit
#   deadline_ms: quit this long after launch whatever happens
#   grace_ms: quit this long after hole_punched or return_unsuccessful

const PLUGIN_PATH := "res://addons/Holepunch/holepunch_node.gd"
const PLUGIN_SIGNALS := [
	"hole_punched", "session_registered", "update_lobby", "return_unsuccessful",
]
const TERMINAL_SIGNALS := ["hole_punched", "return_unsuccessful"]

var _config: Dictionary = {}
# Variant: the plugin script has no class_name, and its API differs per revision.
var _plugin: Variant = null
var _counts: Dictionary = {}
var _started_msec: int = 0
var _ending: bool = false


func _ready() -> void:
	_started_msec = Time.get_ticks_msec()
	var parsed: Variant = JSON.parse_string(OS.get_environment("HP_DRIVER"))
	if typeof(parsed) != TYPE_DICTIONARY:
		_emit_line({"godot": "error", "message": "HP_DRIVER is not a JSON object"})
		get_tree().quit(2)
		return
	_config = parsed
	_plugin = load(PLUGIN_PATH).new()
	_plugin.rendevouz_address = str(_config["server"])
	_plugin.rendevouz_port = int(_config["port"])
	add_child(_plugin)
	for signal_name in PLUGIN_SIGNALS:
		if _plugin.has_signal(signal_name):
			_plugin.connect(signal_name, Callable(self, "_on_" + signal_name))
	_emit_line({"godot": "ready", "engine": Engine.get_version_info()["string"]})
	_after(float(_config.get("deadline_ms", 20000)), "_end", ["deadline"])
	_after(float(_config.get("start_ms", 0)), "_start", [])


func _start() -> void:
	var session: String = str(_config["session"])
	var is_host: bool = bool(_config["host"])
	var player_name: String = str(_config["name"])
	if _config["api"] == "lobby":
		_plugin.start_traversal(session, is_host, player_name, str(_config["nickname"]))
	else:
		_plugin.start_traversal(session, is_host, player_name)
	_emit_line({"godot": "started"})
	_schedule("start", 0)


func _on_hole_punched(my_port: int, hosts_port: int, hosts_address: String) -> void:
	_record("hole_punched", [my_port, hosts_port, hosts_address])


func _on_session_registered() -> void:
	_record("session_registered", [])


func _on_update_lobby(nicknames: PackedStringArray, max_players: String) -> void:
	_record("update_lobby", [Array(nicknames), max_players])


func _on_return_unsuccessful(message: String) -> void:
	_record("return_unsuccessful", [message])


func _record(signal_name: String, arguments: Array) -> void:
	_emit_line({"godot": "signal", "signal": signal_name, "args": arguments})
	_counts[signal_name] = int(_counts.get(signal_name, 0)) + 1
	_schedule(signal_name, _counts[signal_name])
	if signal_name in TERMINAL_SIGNALS:
		_after(float(_config.get("grace_ms", 500)), "_end", [signal_name])


func _schedule(on: String, count: int) -> void:
	for action in _config.get("actions", []):
		if action["on"] == on and (on == "start" or int(action["n"]) == count):
			_after(float(action.get("delay_ms", 0)), "_act", [str(action["do"])])


func _act(what: String) -> void:
	if _ending:
		return
	_emit_line({"godot": "call", "call": what})
	match what:
		"finalize_peers":
			if _config["api"] == "lobby":
				_plugin.finalize_peers()
			else:
				_plugin.finalize_peers(str(_config["session"]))
		"client_disconnect":
			_plugin.client_disconnect()
		"close_session":
			_plugin.close_session()
		"checkout":
			_plugin.checkout()
		"quit":
			_end("quit")


func _after(delay_ms: float, method: String, arguments: Array) -> void:
	var timer: SceneTreeTimer = get_tree().create_timer(delay_ms / 1000.0)
	timer.timeout.connect(Callable(self, method).bindv(arguments))


func _end(reason: String) -> void:
	if _ending:
		return
	_ending = true
	_emit_line({"godot": "end", "reason": reason})
	get_tree().quit(0)


func _emit_line(line: Dictionary) -> void:
	line["ms"] = Time.get_ticks_msec() - _started_msec
	print(JSON.stringify(line))
