@icon("holepunch_icon.svg")
class_name HolePunch
extends Node
## NAT hole punching for Godot 4 through a HolePunch rendezvous server (protocol v2).
##
## Keeps the API of the original HolePunch plugin (start_traversal, finalize_peers,
## client_disconnect, close_session and its four signals), so a game migrates by swapping the
## addon folder; adds what v2 gives: error codes, per-peer results, N players with every pair
## confirmed, LAN candidates, port prediction, retransmission, keepalives and a timeout.
##
## When [signal hole_punched] is emitted the node has released its UDP port: the game's own
## transport binds it at once, or call [method create_enet_peer] for a ready
## [ENetMultiplayerPeer] on the punched path. A peer without a direct path is reached
## through the server's transparent relay (path "relay"): its address and port are then the
## relay's, and the game's transport sends raw datagrams there unchanged. Before registering
## the node measures its NAT's class ([member use_nat_strategy]) and picks a strategy per peer
## from both classes, as the TypeScript client does: behind a random-port (symmetric) NAT
## against an endpoint-independent one it probes with many sockets (path "birthday"), and
## the port it hands over is the socket that won. See docs/godot.md.

## The hole is punched. [param my_port] is the local UDP port to bind (now free; after a
## birthday win on this side, not the one the traversal registered from);
## [param hosts_port] and [param hosts_address] are where the host is reached (for the host
## itself: its own port and ""); when the host is relayed, the server's address and the
## relay port.
signal hole_punched(my_port: int, hosts_port: int, hosts_address: String)
## The server registered us; the lobby follows.
signal session_registered
## The lobby changed: every player's nickname, and the session's size.
signal update_lobby(nicknames: PackedStringArray, max_players: int)
## The traversal failed; [param message] says why (see [member last_error_code]).
signal return_unsuccessful(message: String)
## Like [signal return_unsuccessful], with the stable error code (src/errors.ts codes).
signal traversal_failed(code: String, message: String)
## Success with every detail: see [member last_result]. Emitted right after
## [signal hole_punched].
signal traversal_succeeded(result: Dictionary)
## An open session ([member keep_open_ms]), after [signal hole_punched]: a player who joined
## late, or came back under its name, is reached. [param peer] is as in
## [code]last_result.peers[/code] (name, nickname, is_host, address, port, path, rtt_ms, nat,
## strategy). The host's ENet from [method create_enet_peer] accepts its connection by itself.
signal peer_joined(peer: Dictionary)
## An open session: a late player could not be reached; [param peer] has name, nickname,
## is_host and cause (as [code]last_result.failed[/code]).
signal peer_failed(peer: Dictionary)
## After [signal hole_punched], while the session is open: a player left
## ([param why] "left") or went silent for the session's member silence ("silent": its game
## crashed or lost its network; see [member member_silence_ms]).
signal peer_left(player_name: String, why: String)
## The open session ended after [signal hole_punched] (the game goes on peer to peer): the
## host closed it ([param code] session_closed), it left, or the keep-open time ran out.
signal session_ended(code: String, message: String)
## This player ended its own traversal: [param kind] is "leave" ([method client_disconnect],
## [method checkout]) or "close" ([method close_session]). Not a failure: neither
## [signal return_unsuccessful] nor [signal traversal_failed] follows.
signal session_left(kind: String)

# Preloaded rather than named by class_name: a project run headless without an editor import
# has no global class cache.
const Traversal := preload("holepunch_traversal.gd")
const Codec := preload("holepunch_codec.gd")
const Redundancy := preload("holepunch_redundancy.gd")

## The rendezvous server's address (IP or host name).
@export var rendevouz_address: String = ""
## The rendezvous server's UDP port.
@export var rendevouz_port: int = 4000
## Players in a session the host creates (2-32).
@export_range(2, 32) var max_player_count: int = 2
## Local UDP port to punch from (0: any free port). The original used the server's port.
@export var local_port: int = 0
## Fail when not punched this long after [method start_traversal] (0: wait in the lobby as
## long as it takes).
@export var traversal_timeout_ms: int = 0
## How long punching may take once the peers are known.
@export var punch_budget_ms: int = 8000
## Fail unless every peer is reached (else the host succeeds with the peers it reached; a
## joiner always needs the host).
@export var require_all_peers: bool = false
## Offer this machine's LAN addresses to peers (players behind the same router).
@export var use_lan_candidates: bool = true
## Before releasing the port, wait until the peers stopped punching us this long (they
## confirmed us), at most [member handover_max_ms].
@export var handover_quiet_ms: int = 400
@export var handover_max_ms: int = 3000
## Reach peers without a direct path through the server's transparent relay (asked for
## 500 ms after the peer list, in parallel with the punch). False: such peers fail with their
## cause.
@export var use_relay: bool = true
## Measure this side's NAT class before registering (two probes to the server's main and
## alternate ports, at most 400 ms; a server without an alternate port answers at once and the
## class stays "unknown"), send it to the peers, and choose the strategy per peer from both
## classes: relay at once when no direct path is to be expected, birthday probing (up to 256
## extra UDP sockets for a second or two on the random-port side) or a port sweep against a
## sequential NAT. False: always "unknown", plain punching. See docs/godot.md, "NAT classes".
@export var use_nat_strategy: bool = true
## How many times [method create_enet_peer]'s ENet sends each datagram to the peers. 1: once,
## plain ENet on the punched port. 2-4: that many copies, through a forwarder that keeps the
## punched port (ENet runs on loopback behind it), for very lossy paths; costs that many
## times the upload. See docs/godot.md, "ENet on a very lossy path".
@export_range(1, 4) var enet_redundancy: int = 1
## Host: keep the session open this long after the start (ms, whole seconds, at most
## 65535 s; 0: closed at the start). Players who join late, and a player whose game crashed
## and comes back under its name, are punched to everyone present ([signal peer_joined]); the
## host ends it with [method close_session]. The traversal then goes on after
## [signal hole_punched] on the punched port, which needs [method create_enet_peer] (its ENet
## runs behind the addon's forwarder). See docs/godot.md, "Late join and rejoin".
@export var keep_open_ms: int = 0
## Host: a player silent this long leaves the lobby, or the open session, for everyone (ms,
## 6000-60000; 0: the server's default, 15000). Players then send keepalives a third as
## often. This is what a crashed player costs the others.
@export var member_silence_ms: int = 0
## Joiner: how long a join to a session that does not exist (yet) is retried, since its host
## may start a moment later (ms). 0: fail at once with session_not_found (a code typed by a
## player).
@export var session_wait_ms: int = 15000
## Kept from the original for compatibility; v2 predicts ports on its own (+-8).
@export var port_cascade_range: int = 10
## Kept from the original for compatibility; v2 retransmits on its own.
@export var response_window: int = 5
## The original's "test on one machine" switch. Here loopback and LAN already work (peers'
## public and LAN addresses); true also offers 127.0.0.1 as a candidate, for several
## instances on one computer whose router does not hairpin.
@export var local_testing: bool = false
## How long the server may stay silent before the traversal fails: with
## "server_unreachable" when it never answered (a wrong address or port, a closed firewall),
## "timeout" when it stopped answering. Lower it (say 3000) to learn of a dead server sooner;
## the server answers every request within a round trip.
@export var server_timeout_ms: int = 20000

## The stable code of the last failure ("" if none): bad_request, session_not_found,
## session_full, name_taken, punch_failed, timeout, server_unreachable, socket_error, ...
var last_error_code: String = ""
## The last success: local_port, public_address, public_port, is_host, host_address,
## host_port, elapsed_ms, punch_ms (from the peer list to punched), handover_ms, nat (this
## side's measured NAT class: eim, edm-sequential, edm-random or unknown), peers (each: name,
## nickname, is_host, address, port, path = public/local/predicted/reflexive/birthday/relay,
## rtt_ms, nat = the peer's class, strategy = the one chosen for it; a relayed peer's address
## and port are the relay's) and failed (each: name, nickname, is_host, cause, relay = what
## became of the relay to it).
var last_result: Dictionary = {}
## Whether this player hosts the current session.
var is_host: bool = false
## The player's name in the session, as given to [method start_traversal] (the original's
## property).
var client_name: String = ""
## Where the host is reached, once punched ("" and 0 before, and for the host itself), as
## the original's properties; [member last_result] has the same and more.
var host_address: String = ""
var host_port: int = 0
## The original's two sockets. v2 talks to the server and the peers from one socket, the
## addon's own until [signal hole_punched] (null when there is none): both names return it.
## Read-only (assignments are ignored).
var server_udp: PacketPeerUDP:
	get:
		return _udp
	set(_value):
		pass
var peer_udp: PacketPeerUDP:
	get:
		return _udp
	set(_value):
		pass
## This side's NAT class as measured before registering (set by [signal session_registered]):
## "eim", "edm-sequential", "edm-random", or "unknown" (not measured, or no answer). See
## docs/godot.md, "NAT classes".
var nat_class: String = "unknown"
## Test hook, like the Node client's dropDatagram:
## [code]func(direction: String, address: String, port: int, data: PackedByteArray) -> bool[/code]
## ("in"/"out"); true drops the datagram. Only the addon's socket, never the game's.
var drop_datagram: Callable

var _udp: PacketPeerUDP = null
## The birthday sockets the traversal opened (hard side), by socket id: closed when the punch
## settles, but for the ones the peer reached, which go at the hand-over.
var _birthday: Dictionary = {}
var _traversal: Traversal = null
var _server_ip: String = ""
var _session: String = ""
var _punched_event: Dictionary = {}
var _punched_at: int = -1
var _bound_port: int = 0
var _redundancy: Redundancy = null
var _redundancy_peer: WeakRef = null
## After the hand-over, while the session is open: the traversal goes on (through the
## forwarder of create_enet_peer).
var _after_punch: bool = false
## The background resolution of [member rendevouz_address] (IP resolver item), -1 if none;
## the start_traversal() arguments wait in [member _resolve_args].
var _resolve_id: int = IP.RESOLVER_INVALID_ID
var _resolve_args: Array = []
var _resolve_until: int = 0


func _ready() -> void:
	set_process(false)


func _exit_tree() -> void:
	_close_socket()
	_close_redundancy()


## Starts registering with the server: the host creates session [param key], others join it.
## [param player_name] must be unique in the session; [param nickname] is what the lobby
## shows.
func start_traversal(key: String, is_player_host: bool, player_name: String,
		nickname: String = "") -> void:
	_reset()
	is_host = is_player_host
	_session = key
	client_name = player_name
	var problem := Traversal.check_input(key, player_name, nickname, max_player_count,
			keep_open_ms if is_player_host else 0, member_silence_ms if is_player_host else 0)
	if problem != "":
		_fail.call_deferred("bad_request", problem)
		return
	if not rendevouz_address.is_valid_ip_address():
		# A host name: resolved on the engine's resolver thread (A and AAAA), polled in
		# _process, so the frame does not wait for DNS.
		_resolve_id = IP.resolve_hostname_queue_item(rendevouz_address, IP.TYPE_ANY)
		if _resolve_id == IP.RESOLVER_INVALID_ID:
			_fail.call_deferred("server_unreachable",
					"cannot resolve the server name %s now" % rendevouz_address)
			return
		_resolve_args = [key, is_player_host, player_name, nickname]
		_resolve_until = Time.get_ticks_msec() + server_timeout_ms
		set_process(true)
		return
	_server_ip = _plain(rendevouz_address)
	_open(key, is_player_host, player_name, nickname)


## The traversal from [member _server_ip] on: binds the socket and starts the protocol.
func _open(key: String, is_player_host: bool, player_name: String, nickname: String) -> void:
	_udp = PacketPeerUDP.new()
	var err := _udp.bind(local_port, "*")
	if err != OK:
		_udp = null
		_fail.call_deferred("socket_error",
				"cannot bind UDP port %d: %s" % [local_port, error_string(err)])
		return
	_bound_port = _udp.get_local_port()
	_traversal = Traversal.new({
		"server_address": _server_ip,
		"server_port": rendevouz_port,
		"session": key,
		"is_host": is_player_host,
		"name": player_name,
		"nickname": nickname,
		"max_players": max_player_count,
		"local_candidates": _candidates(_bound_port),
		"timeout_ms": traversal_timeout_ms,
		"server_timeout_ms": server_timeout_ms,
		"punch_budget_ms": punch_budget_ms,
		"require_all_peers": require_all_peers,
		"require_host": not is_player_host,
		"relay": use_relay,
		"classify_nat": use_nat_strategy,
		"nat_strategy": use_nat_strategy,
		"keep_open_ms": keep_open_ms,
		"member_silence_ms": member_silence_ms,
		"session_wait_ms": maxi(0, session_wait_ms),
	})
	_traversal.send = _send
	_traversal.send_from = _send_from
	_traversal.open_socket = _open_birthday_socket
	_traversal.close_socket = _close_birthday_socket
	_traversal.on_event = _on_event
	_traversal.start(Time.get_ticks_msec())
	set_process(true)


## Host: start the session now, with the players in the lobby.
func finalize_peers() -> void:
	if _traversal != null:
		_traversal.finalize(Time.get_ticks_msec())


## Leave the session (a joiner's way out; a host's leave closes its lobby).
func client_disconnect() -> void:
	_goodbye("leave", "Client disconnected.")


## Host: close the session for everyone.
func close_session() -> void:
	_goodbye("close", "Host preemptively closed session!")


## The original's checkout(): leave the session.
func checkout() -> void:
	_goodbye("leave", "Client disconnected.")


## After [signal hole_punched]: an [ENetMultiplayerPeer] on the punched path (host: a server on
## the punched port; others: a client of the host from the punched port), or null (see the
## error printed). Assign it to [code]multiplayer.multiplayer_peer[/code].
func create_enet_peer(channel_count: int = 0) -> ENetMultiplayerPeer:
	if last_result.is_empty():
		push_error("HolePunch.create_enet_peer: nothing punched yet")
		return null
	# An open session: the forwarder keeps the punched port, so the traversal goes on there.
	if enet_redundancy > 1 or _after_punch:
		return _create_redundant_enet_peer(channel_count, enet_redundancy)
	var peer := ENetMultiplayerPeer.new()
	var err: Error
	if last_result.is_host:
		err = peer.create_server(last_result.local_port, max_player_count - 1, channel_count)
	else:
		err = peer.create_client(last_result.host_address, last_result.host_port,
				channel_count, 0, 0, last_result.local_port)
	if err != OK:
		push_error("HolePunch.create_enet_peer: %s" % error_string(err))
		return null
	return peer


## With [member enet_redundancy] above 1, after [method create_enet_peer]: datagrams
## [code]received[/code] from peers and handed to ENet, [code]duplicates[/code] dropped,
## [code]from_enet[/code] (sent by ENet) and [code]sent[/code] to peers, copies included, so
## far; empty otherwise.
func get_redundancy_stats() -> Dictionary:
	return _redundancy.get_stats() if _redundancy != null else {}


## Whether peers without a direct path are reached through the server's transparent relay
## ([member use_relay]; a server started with --no-relay still refuses, and such peers then
## fail with cause relay_unavailable). See docs/godot.md, "Relay".
func is_relay_available() -> bool:
	return use_relay


## During a traversal: whether [param address]:[param port] is the server (its main port or
## one of our relay ports) rather than a peer's direct path.
func is_server_endpoint(address: String, port: int) -> bool:
	return _traversal != null and _traversal.is_server_endpoint(_plain(address), port)


func _process(_delta: float) -> void:
	if _resolve_id != IP.RESOLVER_INVALID_ID:
		_poll_resolve()
		return
	if _redundancy != null:
		_watch_redundancy()
	if _after_punch:
		_serve_open_session()
		return
	if _udp == null or _traversal == null:
		if _redundancy != null:
			return
		set_process(false)
		return
	var now := Time.get_ticks_msec()
	while _udp != null and _udp.get_available_packet_count() > 0:
		var data := _udp.get_packet()
		var address := _plain(_udp.get_packet_ip())
		var port := _udp.get_packet_port()
		if drop_datagram.is_valid() and drop_datagram.call("in", address, port, data):
			continue
		_traversal.handle(now, address, port, data)
	for socket: int in _birthday.keys():
		_receive_birthday(now, socket)
	if _traversal == null:
		return
	_traversal.handle_timeout(now)
	if _punched_at >= 0:
		_maybe_hand_over(now)
	elif _traversal != null and _traversal.state in ["failed", "left"] \
			and not _traversal.is_busy():
		_close_socket()
		set_process(false)


func _on_event(event: Dictionary) -> void:
	match event.type:
		"registered":
			nat_class = _traversal.nat
			session_registered.emit()
		"lobby":
			update_lobby.emit(PackedStringArray(event.nicknames), int(event.max_players))
		"punched":
			_punched_event = event
			_punched_at = Time.get_ticks_msec()
			_maybe_hand_over(_punched_at)
		"failed":
			_fail(event.code, event.message)
		"peer_joined":
			var peer: Dictionary = event.peer.duplicate()
			peer.nat = _traversal.peer_nat(peer.name)
			peer.strategy = _traversal.strategies.get(peer.name, "punch")
			peer_joined.emit(peer)
		"peer_failed":
			peer_failed.emit(event.peer)
		"peer_left":
			peer_left.emit(event.name, event.why)
		"session_ended":
			session_ended.emit(event.code, event.message)


## After the hand-over of an open session: the traversal's datagrams (through the forwarder,
## or the goodbye's own socket), its timers, and its end.
func _serve_open_session() -> void:
	var now := Time.get_ticks_msec()
	if _traversal != null and _udp != null:
		while _udp != null and _udp.get_available_packet_count() > 0:
			var data := _udp.get_packet()
			_traversal.handle(now, _plain(_udp.get_packet_ip()), _udp.get_packet_port(), data)
	if _traversal != null and _redundancy != null and _redundancy.tap_protocol:
		for item: Array in _redundancy.take_protocol():
			if _traversal == null:
				break
			_traversal.handle(now, item[0], item[1], item[2])
	if _traversal != null:
		_traversal.handle_timeout(now)
	if _traversal != null:
		var done: bool = not _traversal.is_open(now) if _traversal.state == "punched" \
				else not _traversal.has_pending()
		if not done:
			return
	_traversal = null
	_after_punch = false
	_close_socket()
	if _redundancy == null:
		set_process(false)


## Releases the port once the peers stopped punching us (they confirmed us), then tells the
## game.
func _maybe_hand_over(now: int) -> void:
	var last := _traversal.last_peer_punch_at()
	var quiet := _traversal.heard_every_confirmed_peer() and now - last >= handover_quiet_ms
	if not quiet and now - _punched_at < handover_max_ms:
		return
	var event := _punched_event
	var local := _bound_port
	# A birthday win on our side: the game's transport must use the socket that won.
	var game: PacketPeerUDP = _birthday.get(_traversal.game_socket)
	if game != null:
		local = game.get_local_port()
	var to_address := ""
	var to_port := local
	var peers: Array[Dictionary] = []
	# The path of each peer is fixed now: a relayed peer whose direct path confirmed during the
	# wait is handed over direct; after this nothing changes it (ENet binds one address).
	_traversal.stop_punching()
	for confirmed: Dictionary in _traversal.confirmed_peers():
		var p := confirmed.duplicate()
		p.nat = _traversal.peer_nat(p.name)
		p.strategy = _traversal.strategies.get(p.name, "punch")
		peers.append(p)
		if p.is_host:
			to_address = p.address
			to_port = p.port
	last_result = {
		"local_port": local,
		"public_address": _traversal.observed.get("address", ""),
		"public_port": _traversal.observed.get("port", 0),
		"is_host": is_host,
		"host_address": to_address,
		"host_port": to_port,
		"elapsed_ms": event.elapsed_ms,
		"punch_ms": event.punch_ms,
		"handover_ms": now - _punched_at,
		"nat": _traversal.nat,
		"peers": peers,
		"failed": event.failed,
	}
	_punched_at = -1
	_close_socket()
	# An open session goes on (keepalives, late peers) once create_enet_peer's forwarder owns
	# the port; the rest is done with the traversal.
	_after_punch = _traversal.is_open(now)
	if not _after_punch:
		_traversal = null
		set_process(false)
	# The original's properties: the host's own are "" and 0.
	host_address = to_address
	host_port = 0 if is_host else to_port
	hole_punched.emit(local, to_port, to_address)
	traversal_succeeded.emit(last_result)


func _goodbye(kind: String, message: String) -> void:
	var active := _resolve_id != IP.RESOLVER_INVALID_ID or (_traversal != null
			and _traversal.state in ["registering", "lobby", "punching"])
	_cancel_resolve()
	if _after_punch and _traversal != null and _udp == null \
			and (_redundancy == null or not _redundancy.tap_protocol):
		# After the hand-over without the forwarder: the server takes a goodbye by its token
		# from any port.
		_udp = PacketPeerUDP.new()
		if _udp.bind(0, "*") != OK:
			_udp = null
	if _traversal != null:
		_traversal.goodbye(Time.get_ticks_msec(), kind, message)
	if active:
		# The player's own choice, not a failure: the socket closes once the goodbye is sent.
		_punched_at = -1
		session_left.emit(kind)


func _fail(code: String, message: String) -> void:
	last_error_code = code
	_punched_at = -1
	if _traversal == null or not _traversal.is_busy():
		_close_socket()
		set_process(false)
	return_unsuccessful.emit(message)
	traversal_failed.emit(code, message)


func _send(address: String, port: int, data: PackedByteArray) -> void:
	if data.is_empty():
		return
	if _udp == null:
		# After the hand-over of an open session: from the punched port, through the forwarder.
		if _after_punch and _redundancy != null and _redundancy.tap_protocol:
			_redundancy.send_protocol(address, port, data)
		return
	if drop_datagram.is_valid() and drop_datagram.call("out", address, port, data):
		return
	_udp.set_dest_address(address, port)
	_udp.put_packet(data)


## Sends from birthday socket [param socket] (see holepunch_traversal.gd).
func _send_from(socket: int, address: String, port: int, data: PackedByteArray) -> void:
	var udp: PacketPeerUDP = _birthday.get(socket)
	if udp == null or data.is_empty():
		return
	if drop_datagram.is_valid() and drop_datagram.call("out", address, port, data):
		return
	udp.set_dest_address(address, port)
	udp.put_packet(data)


## Binds birthday socket [param socket] on any free port (the traversal's hard side).
func _open_birthday_socket(socket: int) -> bool:
	var udp := PacketPeerUDP.new()
	if udp.bind(0, "*") != OK:
		return false
	_birthday[socket] = udp
	return true


func _close_birthday_socket(socket: int) -> void:
	var udp: PacketPeerUDP = _birthday.get(socket)
	if udp != null:
		udp.close()
	_birthday.erase(socket)


## Hands what arrived on birthday socket [param socket] to the traversal (which may close it).
func _receive_birthday(now: int, socket: int) -> void:
	var udp: PacketPeerUDP = _birthday.get(socket)
	while udp != null and _traversal != null and _birthday.has(socket) \
			and udp.get_available_packet_count() > 0:
		var data := udp.get_packet()
		var address := _plain(udp.get_packet_ip())
		var port := udp.get_packet_port()
		if drop_datagram.is_valid() and drop_datagram.call("in", address, port, data):
			continue
		_traversal.handle(now, address, port, data, socket)


func _reset() -> void:
	_cancel_resolve()
	_close_socket()
	_close_redundancy()
	_traversal = null
	_after_punch = false
	last_error_code = ""
	last_result = {}
	host_address = ""
	host_port = 0
	nat_class = "unknown"
	_punched_event = {}
	_punched_at = -1


func _close_socket() -> void:
	if _udp != null:
		_udp.close()
		_udp = null
	for socket: int in _birthday.keys():
		_close_birthday_socket(socket)


## ENet on loopback behind a forwarder that owns the punched port and sends [param copies]
## of every datagram (see holepunch_redundancy.gd).
func _create_redundant_enet_peer(channel_count: int, copies: int) -> ENetMultiplayerPeer:
	_close_redundancy()
	var proxy := Redundancy.new()
	var peer := ENetMultiplayerPeer.new()
	var err: Error
	if last_result.is_host:
		peer.set_bind_ip(Redundancy.LOOPBACK)
		# An open session: a player back under its name connects again while its old ENet peer
		# has not timed out yet, so ENet takes more than the session's seats (the rendezvous
		# server still holds the session to max_player_count).
		var clients := Codec.MAX_PLAYERS_WIRE - 1 if _after_punch else max_player_count - 1
		err = peer.create_server(0, clients, channel_count)
		if err == OK:
			err = proxy.open(last_result.local_port, peer.host.get_local_port(), copies)
	else:
		err = proxy.open(last_result.local_port, 0, copies)
		if err == OK:
			var port := proxy.add_remote(last_result.host_address, last_result.host_port)
			err = ERR_CANT_CREATE if port == 0 else peer.create_client(Redundancy.LOOPBACK,
					port, channel_count)
	if err != OK:
		proxy.close()
		peer.close()
		push_error("HolePunch.create_enet_peer: %s" % error_string(err))
		return null
	proxy.tap_protocol = _after_punch
	proxy.start()
	_redundancy = proxy
	_redundancy_peer = weakref(peer)
	set_process(true)
	return peer


## Stops the forwarder once its ENet peer is closed or gone.
func _watch_redundancy() -> void:
	var peer: ENetMultiplayerPeer = _redundancy_peer.get_ref() if _redundancy_peer else null
	if peer == null or peer.get_connection_status() \
			== MultiplayerPeer.CONNECTION_DISCONNECTED:
		_close_redundancy()


func _close_redundancy() -> void:
	if _redundancy != null:
		_redundancy.close()
		_redundancy = null
	_redundancy_peer = null


## Polls the background resolution of the server's name; starts the traversal once done
## (an IPv4 address first, else an IPv6 one).
func _poll_resolve() -> void:
	var status := IP.get_resolve_item_status(_resolve_id)
	if status == IP.RESOLVER_STATUS_WAITING:
		if Time.get_ticks_msec() < _resolve_until:
			return
		_cancel_resolve()
		_fail("server_unreachable", "the server name %s did not resolve within %d ms" % [
				rendevouz_address, server_timeout_ms])
		return
	var addresses: Array = IP.get_resolve_item_addresses(_resolve_id) \
			if status == IP.RESOLVER_STATUS_DONE else []
	var args := _resolve_args
	_cancel_resolve()
	_server_ip = _pick_address(addresses)
	if _server_ip == "":
		_fail("server_unreachable", "the server name %s does not resolve" % rendevouz_address)
		return
	_open(args[0], args[1], args[2], args[3])


func _cancel_resolve() -> void:
	if _resolve_id != IP.RESOLVER_INVALID_ID:
		IP.erase_resolve_item(_resolve_id)
	_resolve_id = IP.RESOLVER_INVALID_ID
	_resolve_args = []


## The first IPv4 address of [param addresses], else the first IPv6 one, else "".
static func _pick_address(addresses: Array) -> String:
	var v6 := ""
	for a: String in addresses:
		if not a.is_valid_ip_address():
			continue
		var plain := _plain(a)
		if not plain.contains(":"):
			return plain
		if v6 == "":
			v6 = plain
	return v6


## IPv4-mapped IPv6 ("::ffff:1.2.3.4") to plain IPv4, as the server and peers write it.
static func _plain(address: String) -> String:
	if address.begins_with("::ffff:") and address.contains("."):
		return address.substr(7)
	return address


## The candidates offered to peers: the LAN addresses ([member use_lan_candidates]) and,
## with [member local_testing], loopback first.
func _candidates(port: int) -> Array[Dictionary]:
	var out: Array[Dictionary] = []
	if local_testing:
		out.append({"address": "127.0.0.1", "port": port})
	if use_lan_candidates:
		for c: Dictionary in _lan_candidates(port):
			if out.size() < Codec.MAX_CANDIDATES:
				out.append(c)
	return out


## This machine's LAN IPv4 addresses with [param port] (at most 4), for peers behind the
## same router.
static func _lan_candidates(port: int) -> Array[Dictionary]:
	var out: Array[Dictionary] = []
	for address: String in IP.get_local_addresses():
		if not address.is_valid_ip_address() or address.contains(":"):
			continue
		if address.begins_with("127.") or address.begins_with("169.254."):
			continue
		out.append({"address": address, "port": port})
		if out.size() >= Codec.MAX_CANDIDATES:
			break
	return out
