extends RefCounted
## Carries the game's ENet over the punched path with every datagram sent [member copies]
## times, for paths too lossy for ENet's own reliability (see docs/godot.md, "ENet on a very
## lossy path").
##
## The proxy owns the punched UDP port (so the NAT mappings made by the punch carry the game)
## and ENet runs on loopback behind it. Every datagram ENet sends is sent to the peer
## [member copies] times back to back; on receive, a datagram equal to one received from the
## same peer in the last [constant DUPLICATE_WINDOW_MS] is dropped. Nothing is added to the
## datagrams: a peer without the proxy (plain ENet, the relay) sees ordinary ENet datagrams,
## some of them twice, which ENet discards itself (it sequences every command).
##
## Host: ENet's server listens on 127.0.0.1; every remote endpoint that sends to the punched
## port gets its own loopback socket towards the server, so ENet sees each peer as a distinct
## address. Others: ENet's client connects to the loopback socket of the host's endpoint.
## A thread polls the sockets (about every [constant IDLE_USEC] µs when idle), so the proxy
## adds well under a millisecond, not a frame.
##
## With [member tap_protocol] (an open session, see holepunch.gd) the proxy also carries the
## traversal after the hand-over: HolePunch datagrams (the v2 magic) that reach the punched
## port are kept for [method take_protocol] instead of going to ENet, and
## [method send_protocol] sends from the punched port, so keepalives, late peers' punches and
## the host's close use the mapping the server and the peers know.

const Codec := preload("holepunch_codec.gd")

## Sleep between polls when no datagram moved.
const IDLE_USEC := 500
## Copies of one datagram arrive within this; an equal datagram later is ENet's own.
const DUPLICATE_WINDOW_MS := 1000
## At most this many remote endpoints (a session has at most 31 peers).
const MAX_LINKS := 32
const LOOPBACK := "127.0.0.1"

## Copies of every datagram sent to a peer (1: a plain forwarder).
var copies: int = 2
## Datagrams: received from peers and handed to ENet, dropped as duplicates, sent by ENet,
## and sent to peers (copies included). Read with [method get_stats].
var _stats := {"received": 0, "duplicates": 0, "from_enet": 0, "sent": 0}

var _public: PacketPeerUDP = null
## Host: the ENet server's loopback port (0 for a joiner, whose ENet is learned per link).
var _enet_port: int = 0
var _accept_new: bool = false
## "address:port" -> _Link
var _links := {}
var _thread: Thread = null
var _mutex := Mutex.new()
var _running: bool = false
## Keep HolePunch datagrams for the traversal (see the class description).
var tap_protocol: bool = false
## [address, port, data] received (for the traversal) and to send (from it); under _mutex.
var _inbox: Array = []
var _outbox: Array = []


## One remote endpoint and the loopback socket ENet talks to it through.
class _Link:
	extends RefCounted

	var address: String
	var port: int
	var local := PacketPeerUDP.new()
	## Where ENet is for this link (0 until learned, on a joiner).
	var enet_port: int = 0
	## hash -> time received (ms)
	var seen := {}
	var pruned_at: int = 0

	func _init(remote_address: String, remote_port: int) -> void:
		address = remote_address
		port = remote_port

	func is_duplicate(data: PackedByteArray, now: int) -> bool:
		if now - pruned_at > DUPLICATE_WINDOW_MS:
			pruned_at = now
			for key: int in seen.keys():
				if now - int(seen[key]) > DUPLICATE_WINDOW_MS:
					seen.erase(key)
		var key := hash(data) ^ (data.size() << 20)
		if seen.has(key) and now - int(seen[key]) <= DUPLICATE_WINDOW_MS:
			return true
		seen[key] = now
		return false


## Binds the punched [param port] (all addresses). [param enet_port]: the host's ENet server
## port on loopback (remote endpoints are accepted as they come), or 0 on a joiner (only the
## endpoints given to [method add_remote]).
func open(port: int, enet_port: int, copy_count: int) -> Error:
	copies = clampi(copy_count, 1, 4)
	_enet_port = enet_port
	_accept_new = enet_port > 0
	_public = PacketPeerUDP.new()
	var err := _public.bind(port, "*")
	if err != OK:
		_public = null
	return err


## A remote endpoint ENet talks to; returns the loopback port ENet reaches it at (0: error).
func add_remote(address: String, port: int) -> int:
	var link := _link(address, port)
	return 0 if link == null else link.local.get_local_port()


## Starts forwarding on a thread.
func start() -> void:
	if _public == null or _thread != null:
		return
	_running = true
	_thread = Thread.new()
	_thread.start(_run)


## Stops forwarding and releases every socket.
func close() -> void:
	_mutex.lock()
	_running = false
	_mutex.unlock()
	if _thread != null:
		_thread.wait_to_finish()
		_thread = null
	for link: _Link in _links.values():
		link.local.close()
	_links.clear()
	if _public != null:
		_public.close()
		_public = null


func is_open() -> bool:
	return _public != null


## The HolePunch datagrams received since the last call, each [address, port, data].
func take_protocol() -> Array:
	_mutex.lock()
	var out := _inbox
	_inbox = []
	_mutex.unlock()
	return out


## Sends [param data] (a HolePunch datagram) from the punched port on the next poll.
func send_protocol(address: String, port: int, data: PackedByteArray) -> void:
	_mutex.lock()
	_outbox.append([address, port, data])
	_mutex.unlock()


## received, duplicates, from_enet, sent (datagram counts so far).
func get_stats() -> Dictionary:
	_mutex.lock()
	var out := _stats.duplicate()
	_mutex.unlock()
	return out


func _run() -> void:
	while true:
		_mutex.lock()
		var running := _running
		_mutex.unlock()
		if not running:
			return
		if not _poll(Time.get_ticks_msec()):
			OS.delay_usec(IDLE_USEC)


## Moves every waiting datagram; true when one moved.
func _poll(now: int) -> bool:
	var moved := false
	var received := 0
	var duplicates := 0
	var from_enet := 0
	if tap_protocol:
		_mutex.lock()
		var out := _outbox
		_outbox = []
		_mutex.unlock()
		for item: Array in out:
			moved = true
			_public.set_dest_address(item[0], item[1])
			_public.put_packet(item[2])
	while _public.get_available_packet_count() > 0:
		var data := _public.get_packet()
		moved = true
		var address := _plain(_public.get_packet_ip())
		var port := _public.get_packet_port()
		if tap_protocol and _is_protocol(data):
			_mutex.lock()
			_inbox.append([address, port, data])
			_mutex.unlock()
			continue
		var link: _Link = _link(address, port, _accept_new)
		if link == null or link.enet_port == 0:
			continue
		if link.is_duplicate(data, now):
			duplicates += 1
			continue
		received += 1
		link.local.set_dest_address(LOOPBACK, link.enet_port)
		link.local.put_packet(data)
	for link: _Link in _links.values():
		while link.local.get_available_packet_count() > 0:
			var data := link.local.get_packet()
			moved = true
			if link.enet_port == 0:
				link.enet_port = link.local.get_packet_port()
			from_enet += 1
			_public.set_dest_address(link.address, link.port)
			for i in copies:
				_public.put_packet(data)
	if moved:
		_mutex.lock()
		_stats.received += received
		_stats.duplicates += duplicates
		_stats.from_enet += from_enet
		_stats.sent += from_enet * copies
		_mutex.unlock()
	return moved


func _link(address: String, port: int, create: bool = true) -> _Link:
	var key := "%s:%d" % [address, port]
	if _links.has(key):
		return _links[key]
	if not create or _links.size() >= MAX_LINKS:
		return null
	var link := _Link.new(address, port)
	if link.local.bind(0, LOOPBACK) != OK:
		return null
	link.enet_port = _enet_port
	_links[key] = link
	return link


## A HolePunch v2 datagram (its 4-byte magic): never an ENet one, whose first two bytes are a
## small peer id with flags.
static func _is_protocol(data: PackedByteArray) -> bool:
	if data.size() < Codec.MAGIC.size():
		return false
	for i in Codec.MAGIC.size():
		if data[i] != Codec.MAGIC[i]:
			return false
	return true


static func _plain(address: String) -> String:
	if address.begins_with("::ffff:") and address.contains("."):
		return address.substr(7)
	return address
