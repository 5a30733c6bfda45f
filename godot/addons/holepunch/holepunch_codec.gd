@tool
class_name HolePunchCodec
extends RefCounted
## Codec of the HolePunch v2 wire protocol (docs/protocol-v2.md, sections 1-2), byte for byte
## the TypeScript codec (src/protocol/v2.ts), checked against its golden vectors
## (godot/tests/v2_vectors.json).
##
## Messages are Dictionaries keyed by the spec's field names: [code]type[/code] (a String such
## as [code]"host"[/code]), [code]requestId[/code], then the type's fields. Byte fields
## (token, punchKey, id, bindToken, tag) are [PackedByteArray]; an endpoint is
## [code]{"address": String, "port": int}[/code]; a peer is
## [code]{"name", "nickname", "isHost", "publicEndpoint", "candidates"}[/code], plus
## [code]"nat"[/code] when the peer's NAT class is known. [code]nat[/code] (in host, join and
## every peer) is one of [constant NAT_CLASSES] ("eim", "edm-sequential", "edm-random"); absent
## means "unknown" (wire 0), which is what [method encode] sends unless the message says
## otherwise.
## [method decode] never fails loudly on untrusted input: it returns
## [code]{"ok": false, "error": String}[/code] (plus [code]code[/code] and
## [code]requestId[/code] when the header was readable).

## The values shared with the TypeScript client, generated from it (src/client/godot-shared.ts).
const Shared := preload("holepunch_shared.gd")
const MAGIC := Shared.MAGIC
## NAT mapping classes by wire value (docs/protocol-v2.md section 6, "Strategy").
const NAT_CLASSES := Shared.NAT_CLASSES
const VERSION := Shared.VERSION
## The revision of v2 this codec speaks (docs/protocol-v2.md section 2, "Revisions"): sent in
## host/join as [code]revision[/code]; the server then adds the revision's trailers
## ([code]keepaliveMs[/code] in registered, [code]version[/code] and [code]openS[/code] in peers).
const REVISION := Shared.REVISION
## A host's [code]silenceS[/code]: 0 (the server's default, 15 s) or this range.
const MIN_SILENCE_S := Shared.MIN_SILENCE_S
const MAX_SILENCE_S := Shared.MAX_SILENCE_S
const HEADER_BYTES := Shared.HEADER_BYTES
const MAX_DATAGRAM_BYTES := Shared.MAX_DATAGRAM_BYTES
const TOKEN_BYTES := Shared.TOKEN_BYTES
const PUNCH_KEY_BYTES := Shared.PUNCH_KEY_BYTES
const TAG_BYTES := Shared.TAG_BYTES
## The server's pushes to one member, which end in a tag keyed with that member's token.
const PUSH_TYPES: Array[String] = ["lobby", "closed", "peer_left"]
const RELAY_ID_BYTES := Shared.RELAY_ID_BYTES
const RELAY_BIND_TOKEN_BYTES := Shared.RELAY_BIND_TOKEN_BYTES
const MAX_SESSION_BYTES := Shared.MAX_SESSION_BYTES
const MAX_NAME_BYTES := Shared.MAX_NAME_BYTES
const MAX_NICKNAME_BYTES := Shared.MAX_NICKNAME_BYTES
const MAX_REASON_BYTES := Shared.MAX_REASON_BYTES
const MAX_CODE_BYTES := Shared.MAX_CODE_BYTES
const MAX_ADDRESS_BYTES := Shared.MAX_ADDRESS_BYTES
const MAX_CANDIDATES := Shared.MAX_CANDIDATES
const MIN_PLAYERS := Shared.MIN_PLAYERS
const MAX_PLAYERS_WIRE := Shared.MAX_PLAYERS_WIRE

## Message type codes (the spec's section 2). 0x61-0x63 (the wrapped relay's) are retired.
const TYPES := Shared.TYPES

## NAT diagnosis: a probe is exactly this long (zero padding), so a reply never doubles it.
const PROBE_BYTES := Shared.PROBE_BYTES
const PROBE_CHANGE_ADDRESS := Shared.PROBE_CHANGE_ADDRESS
const PROBE_CHANGE_PORT := Shared.PROBE_CHANGE_PORT

## The stable error codes of src/errors.ts, in its order.
const ERROR_CODES := Shared.ERROR_CODES

const _ADDRESS_CHARS := "0123456789abcdefABCDEF:."


## Encodes one message (any type but punch/punch_ack, see [method encode_punch]). Returns an
## empty array (and pushes an error) when a field breaks a limit: callers validate user input
## first.
static func encode(msg: Dictionary) -> PackedByteArray:
	var type_name: String = msg.get("type", "")
	if not TYPES.has(type_name) or type_name == "punch" or type_name == "punch_ack":
		push_error("HolePunchCodec.encode: cannot encode type '%s'" % type_name)
		return PackedByteArray()
	var w := _Writer.new()
	_header(w, TYPES[type_name], int(msg.get("requestId", 0)))
	match type_name:
		"host":
			w.text(msg.session, MAX_SESSION_BYTES)
			w.u8(msg.maxPlayers)
			w.text(msg.name, MAX_NAME_BYTES)
			w.text(msg.nickname, MAX_NICKNAME_BYTES)
			w.endpoints(msg.candidates)
			w.u8(_nat_byte(msg))
			if msg.has("revision"):
				w.u8(msg.revision)
				if int(msg.revision) >= 1:
					w.u16(msg.get("keepOpenS", 0))
					w.u8(msg.get("silenceS", 0))
		"join":
			w.text(msg.session, MAX_SESSION_BYTES)
			w.text(msg.name, MAX_NAME_BYTES)
			w.text(msg.nickname, MAX_NICKNAME_BYTES)
			w.endpoints(msg.candidates)
			w.u8(_nat_byte(msg))
			if msg.has("revision"):
				w.u8(msg.revision)
		"start", "leave":
			w.text(msg.session, MAX_SESSION_BYTES)
			w.fixed(msg.token, TOKEN_BYTES)
		"peers_ack":
			w.text(msg.session, MAX_SESSION_BYTES)
			w.fixed(msg.token, TOKEN_BYTES)
			if msg.has("version"):
				w.u32(msg.version)
		"close":
			w.text(msg.session, MAX_SESSION_BYTES)
			w.fixed(msg.token, TOKEN_BYTES)
			w.text(truncate_utf8(msg.reason, MAX_REASON_BYTES), MAX_REASON_BYTES)
		"keepalive":
			w.text(msg.session, MAX_SESSION_BYTES)
			w.fixed(msg.token, TOKEN_BYTES)
			w.u32(msg.lobbyVersion)
		"registered":
			w.fixed(msg.token, TOKEN_BYTES)
			w.endpoint(msg.observed)
			if msg.has("keepaliveMs"):
				w.u16(msg.keepaliveMs)
		"ok":
			pass
		"error":
			w.text(msg.code, MAX_CODE_BYTES)
			w.text(truncate_utf8(msg.message, MAX_REASON_BYTES), MAX_REASON_BYTES)
		"lobby":
			w.u32(msg.version)
			w.u8(msg.maxPlayers)
			w.u8(msg.nicknames.size())
			for nickname: String in msg.nicknames:
				w.text(nickname, MAX_NICKNAME_BYTES)
		"peers":
			w.fixed(msg.punchKey, PUNCH_KEY_BYTES)
			w.fixed(msg.token, TOKEN_BYTES)
			w.endpoint(msg.observed)
			w.u8(msg.total)
			w.u8(msg.first)
			w.u8(msg.peers.size())
			for peer: Dictionary in msg.peers:
				w.text(peer.name, MAX_NAME_BYTES)
				w.text(peer.nickname, MAX_NICKNAME_BYTES)
				w.u8(1 if peer.isHost else 0)
				w.endpoint(peer.publicEndpoint)
				w.endpoints(peer.candidates)
				w.u8(_nat_byte(peer))
			if msg.has("version"):
				w.u32(msg.version)
				w.u16(msg.get("openS", 0))
		"closed":
			w.text(msg.code, MAX_CODE_BYTES)
			w.text(truncate_utf8(msg.reason, MAX_REASON_BYTES), MAX_REASON_BYTES)
		"peer_left":
			w.text(msg.name, MAX_NAME_BYTES)
			w.u8(1 if msg.why == "left" else 2)
		"relay_allocate":
			w.text(msg.session, MAX_SESSION_BYTES)
			w.fixed(msg.token, TOKEN_BYTES)
			w.text(msg.peer, MAX_NAME_BYTES)
		"relay_granted":
			w.text(msg.peer, MAX_NAME_BYTES)
			w.u16(msg.port)
			w.fixed(msg.id, RELAY_ID_BYTES)
			w.fixed(msg.bindToken, RELAY_BIND_TOKEN_BYTES)
		"relay_bind":
			w.fixed(msg.id, RELAY_ID_BYTES)
			w.fixed(msg.proof, RELAY_BIND_TOKEN_BYTES)
		"relay_bound":
			w.fixed(msg.id, RELAY_ID_BYTES)
		"probe":
			var flags := 0
			if msg.changeAddress:
				flags |= PROBE_CHANGE_ADDRESS
			if msg.changePort:
				flags |= PROBE_CHANGE_PORT
			w.u8(flags)
			while w.buf.size() < PROBE_BYTES:
				w.u8(0)
		"probe_reply":
			w.endpoint(msg.observed)
			w.text(msg.altAddress, MAX_ADDRESS_BYTES)
			w.u16(msg.altPort)
	if PUSH_TYPES.has(type_name):
		# A push is written with the tag it carries; encode_push makes one.
		w.fixed(msg.get("tag", PackedByteArray()), TAG_BYTES)
	return w.done()


## Encodes a push ([code]lobby[/code], [code]closed[/code], [code]peer_left[/code]; what the
## server sends) and appends its tag: HMAC-SHA-256 keyed with the receiving member's token,
## truncated to 16 bytes (docs/protocol-v2.md, "Pushes are authenticated").
static func encode_push(token: PackedByteArray, msg: Dictionary) -> PackedByteArray:
	var zeros := PackedByteArray()
	zeros.resize(TAG_BYTES)
	zeros.fill(0)
	var body := msg.duplicate()
	body.tag = zeros
	var bytes := encode(body)
	if bytes.is_empty():
		return bytes
	var signed := bytes.slice(0, bytes.size() - TAG_BYTES)
	return signed + punch_tag(token, signed)


## True when a decoded push carries the tag of [param token] (our own member token). A client
## acts on a [code]lobby[/code], [code]closed[/code] or [code]peer_left[/code] only then: the
## server's source address alone can be forged.
static func verify_push(token: PackedByteArray, msg: Dictionary) -> bool:
	if token.size() != TOKEN_BYTES or not msg.has("tag") or not msg.has("signed"):
		return false
	return verify_punch_tag(token, msg.signed, msg.tag)


## Encodes a punch or punch_ack ([code]type, requestId, from, to, candidate, sentAt[/code])
## and appends its tag: HMAC-SHA-256 with the session punch key, truncated to 16 bytes.
static func encode_punch(key: PackedByteArray, msg: Dictionary) -> PackedByteArray:
	var w := _Writer.new()
	_header(w, TYPES[msg.type], int(msg.requestId))
	w.text(msg.from, MAX_NAME_BYTES)
	w.text(msg.to, MAX_NAME_BYTES)
	w.u8(msg.candidate)
	w.u32(msg.sentAt)
	if w.failed:
		return PackedByteArray()
	w.bytes(punch_tag(key, w.buf))
	return w.done()


## The proof of a revision-1 relay_bind (docs/protocol-v2.md, "Binding"): HMAC-SHA-256 keyed
## with the bindToken over the bind's header (its request id is the counter) and its
## allocation id, truncated to 16 bytes. A captured bind then replays only as itself.
static func relay_bind_proof(
		bind_token: PackedByteArray, request_id: int, id: PackedByteArray) -> PackedByteArray:
	var w := _Writer.new()
	_header(w, TYPES.relay_bind, request_id)
	w.fixed(id, RELAY_ID_BYTES)
	return punch_tag(bind_token, w.buf)


## A revision-1 relay_bind: counter [param request_id] (greater in every bind), signed with
## [param bind_token].
static func encode_relay_bind(
		bind_token: PackedByteArray, request_id: int, id: PackedByteArray) -> PackedByteArray:
	return encode({"type": "relay_bind", "requestId": request_id, "id": id,
			"proof": relay_bind_proof(bind_token, request_id, id)})


static func punch_tag(key: PackedByteArray, signed: PackedByteArray) -> PackedByteArray:
	var crypto := Crypto.new()
	return crypto.hmac_digest(HashingContext.HASH_SHA256, key, signed).slice(0, TAG_BYTES)


## Constant-time check of a received tag against the one [param key] gives.
static func verify_punch_tag(
		key: PackedByteArray, signed: PackedByteArray, tag: PackedByteArray) -> bool:
	var expected := punch_tag(key, signed)
	if tag.size() != expected.size():
		return false
	var diff := 0
	for i in expected.size():
		diff |= expected[i] ^ tag[i]
	return diff == 0


## Decodes one untrusted datagram. Returns [code]{"ok": true, "msg": Dictionary}[/code] or
## [code]{"ok": false, "error": String, "code"?: String, "requestId"?: int}[/code].
static func decode(data: PackedByteArray) -> Dictionary:
	if data.size() < HEADER_BYTES:
		return {"ok": false, "error": "shorter than a v2 header"}
	if data[0] != MAGIC[0] or data[1] != MAGIC[1] or data[2] != MAGIC[2]:
		return {"ok": false, "error": "no v2 magic"}
	var r := _Reader.new(data)
	r.off = 4
	var type_code := r.u8()
	var request_id := r.u32()
	if data[3] != VERSION:
		return _refused("protocol version %d not supported" % data[3], request_id,
				"unsupported_version")
	if data.size() > MAX_DATAGRAM_BYTES:
		return _refused("datagram too large", request_id)
	var type_name := ""
	for key: String in TYPES:
		if TYPES[key] == type_code:
			type_name = key
	if type_name == "":
		return _refused("unknown or reserved message type 0x%x" % type_code, request_id)
	var msg := _read_body(r, type_name, request_id)
	if r.err != "":
		return _refused(r.err, request_id)
	if r.off != data.size() and not _is_register_tail(msg, data, r.off):
		return _refused("trailing bytes", request_id)
	return {"ok": true, "msg": msg}


## What may follow the last known field of a host/join: zero padding (clients pad both to 64
## bytes), or anything from a sender of a newer revision than ours (its extra fields), as the
## TypeScript codec's isRegisterTail.
static func _is_register_tail(msg: Dictionary, data: PackedByteArray, from: int) -> bool:
	if msg.type != "host" and msg.type != "join":
		return false
	if int(msg.get("revision", 0)) > REVISION:
		return true
	for i in range(from, data.size()):
		if data[i] != 0:
			return false
	return true


## True when [param text] is non-empty (unless [param allow_empty]) and at most
## [param max_bytes] of UTF-8.
static func is_valid_field(text: String, max_bytes: int, allow_empty: bool = false) -> bool:
	if text.is_empty():
		return allow_empty
	return text.to_utf8_buffer().size() <= max_bytes


## Cuts [param text] to at most [param max_bytes] of UTF-8 without splitting a character.
static func truncate_utf8(text: String, max_bytes: int) -> String:
	if text.to_utf8_buffer().size() <= max_bytes:
		return text
	var out := ""
	var used := 0
	for i in text.length():
		var ch := text[i]
		var n := ch.to_utf8_buffer().size()
		if used + n > max_bytes:
			break
		out += ch
		used += n
	return out


## Lower-case hex of [param data] (map keys for tokens, as the TypeScript side does).
static func to_hex(data: PackedByteArray) -> String:
	return data.hex_encode()


static func _refused(error: String, request_id: int, code: String = "bad_request") -> Dictionary:
	return {"ok": false, "error": error, "code": code, "requestId": request_id}


static func _header(w: _Writer, type_code: int, request_id: int) -> void:
	for b: int in MAGIC:
		w.u8(b)
	w.u8(type_code)
	w.u32(request_id)


static func _read_body(r: _Reader, type_name: String, request_id: int) -> Dictionary:
	var msg := {"type": type_name, "requestId": request_id}
	match type_name:
		"host":
			msg.session = r.text(MAX_SESSION_BYTES)
			msg.maxPlayers = r.u8()
			msg.name = r.text(MAX_NAME_BYTES)
			msg.nickname = r.text(MAX_NICKNAME_BYTES)
			msg.candidates = r.endpoints()
			_read_nat(r, msg, true)
			_read_revision(r, msg)
			if msg.has("revision"):
				msg.keepOpenS = r.u16()
				msg.silenceS = r.u8()
		"join":
			msg.session = r.text(MAX_SESSION_BYTES)
			msg.name = r.text(MAX_NAME_BYTES)
			msg.nickname = r.text(MAX_NICKNAME_BYTES)
			msg.candidates = r.endpoints()
			_read_nat(r, msg, true)
			_read_revision(r, msg)
		"start", "leave":
			msg.session = r.text(MAX_SESSION_BYTES)
			msg.token = r.bytes(TOKEN_BYTES)
		"peers_ack":
			msg.session = r.text(MAX_SESSION_BYTES)
			msg.token = r.bytes(TOKEN_BYTES)
			if r.more():
				msg.version = r.u32()
		"close":
			msg.session = r.text(MAX_SESSION_BYTES)
			msg.token = r.bytes(TOKEN_BYTES)
			msg.reason = r.text(MAX_REASON_BYTES)
		"keepalive":
			msg.session = r.text(MAX_SESSION_BYTES)
			msg.token = r.bytes(TOKEN_BYTES)
			msg.lobbyVersion = r.u32()
		"registered":
			msg.token = r.bytes(TOKEN_BYTES)
			msg.observed = r.endpoint()
			if r.more():
				msg.keepaliveMs = r.u16()
		"ok":
			pass
		"error":
			msg.code = r.code()
			msg.message = r.text(MAX_REASON_BYTES)
		"lobby":
			msg.version = r.u32()
			msg.maxPlayers = r.u8()
			var count := r.u8()
			var nicknames: Array[String] = []
			for i in count:
				if r.err != "":
					break
				nicknames.append(r.text(MAX_NICKNAME_BYTES))
			msg.nicknames = nicknames
			_read_push_tag(r, msg)
		"peers":
			msg.punchKey = r.bytes(PUNCH_KEY_BYTES)
			msg.token = r.bytes(TOKEN_BYTES)
			msg.observed = r.endpoint()
			msg.total = r.u8()
			msg.first = r.u8()
			var count := r.u8()
			if msg.first + count > msg.total:
				r.fail("peer slice beyond total")
			var peers: Array[Dictionary] = []
			for i in count:
				if r.err != "":
					break
				var peer := {}
				peer.name = r.text(MAX_NAME_BYTES)
				peer.nickname = r.text(MAX_NICKNAME_BYTES)
				var is_host := r.u8()
				if is_host > 1:
					r.fail("isHost not 0/1")
				peer.isHost = is_host == 1
				peer.publicEndpoint = r.endpoint()
				peer.candidates = r.endpoints()
				_read_nat(r, peer, false)
				peers.append(peer)
			msg.peers = peers
			if r.more():
				msg.version = r.u32()
				msg.openS = r.u16()
		"closed":
			msg.code = r.code()
			msg.reason = r.text(MAX_REASON_BYTES)
			_read_push_tag(r, msg)
		"peer_left":
			msg.name = r.text(MAX_NAME_BYTES)
			var why := r.u8()
			if why != 1 and why != 2:
				r.fail("peer_left reason not 1/2")
			msg.why = "left" if why == 1 else "silent"
			_read_push_tag(r, msg)
		"relay_allocate":
			msg.session = r.text(MAX_SESSION_BYTES)
			msg.token = r.bytes(TOKEN_BYTES)
			msg.peer = r.text(MAX_NAME_BYTES)
		"relay_granted":
			msg.peer = r.text(MAX_NAME_BYTES)
			msg.port = r.u16()
			if msg.port == 0:
				r.fail("port 0")
			msg.id = r.bytes(RELAY_ID_BYTES)
			msg.bindToken = r.bytes(RELAY_BIND_TOKEN_BYTES)
		"relay_bind":
			msg.id = r.bytes(RELAY_ID_BYTES)
			msg.proof = r.bytes(RELAY_BIND_TOKEN_BYTES)
		"relay_bound":
			msg.id = r.bytes(RELAY_ID_BYTES)
		"probe":
			if r.buf.size() != PROBE_BYTES:
				r.fail("a probe is %d bytes" % PROBE_BYTES)
				return msg
			var flags := r.u8()
			if flags & ~(PROBE_CHANGE_ADDRESS | PROBE_CHANGE_PORT) != 0:
				r.fail("unknown probe flags")
				return msg
			r.bytes(PROBE_BYTES - r.off)
			msg.changeAddress = flags & PROBE_CHANGE_ADDRESS != 0
			msg.changePort = flags & PROBE_CHANGE_PORT != 0
		"probe_reply":
			msg.observed = r.endpoint()
			msg.altAddress = r.text(MAX_ADDRESS_BYTES)
			if r.err == "" and msg.altAddress != "":
				if msg.altAddress.length() < 2:
					r.fail("bad alternate address")
					return msg
				for i in msg.altAddress.length():
					if not _ADDRESS_CHARS.contains(msg.altAddress[i]):
						r.fail("bad alternate address")
						return msg
			msg.altPort = r.u16()
		"punch", "punch_ack":
			msg.from = r.text(MAX_NAME_BYTES)
			msg.to = r.text(MAX_NAME_BYTES)
			msg.candidate = r.u8()
			msg.sentAt = r.u32()
			var signed_end := r.off
			msg.tag = r.bytes(TAG_BYTES)
			msg.signed = r.buf.slice(0, signed_end)
	return msg


## Reads a host/join's revision u8 into [code]out.revision[/code] when bytes are left; absent
## or 0 (the zero padding) is revision 0 and left out, as the TypeScript codec does.
static func _read_revision(r: _Reader, out: Dictionary) -> void:
	if r.err != "" or not r.more():
		return
	var revision := r.u8()
	if revision > 0:
		out.revision = revision


## The tag that ends a push, and the bytes it covers (as a punch's).
## The wire value of [code]item.nat[/code] (absent or not a known class: 0, unknown).
static func _nat_byte(item: Dictionary) -> int:
	return maxi(0, NAT_CLASSES.find(String(item.get("nat", "unknown"))))


## Reads the nat u8 into [code]out.nat[/code] (left out when unknown, as the TypeScript codec
## does). At the very end of a host/join it may be absent (an encoder from before the field).
static func _read_nat(r: _Reader, out: Dictionary, optional: bool) -> void:
	if r.err != "" or (optional and r.off == r.buf.size()):
		return
	var n := r.u8()
	if r.err != "":
		return
	if n >= NAT_CLASSES.size():
		r.fail("nat class not 0-3")
		return
	if n > 0:
		out.nat = NAT_CLASSES[n]


static func _read_push_tag(r: _Reader, msg: Dictionary) -> void:
	var signed_end := r.off
	msg.tag = r.bytes(TAG_BYTES)
	msg.signed = r.buf.slice(0, signed_end)


class _Writer:
	extends RefCounted

	var buf := PackedByteArray()
	var failed := false

	func u8(v: int) -> void:
		buf.append(v & 0xFF)

	func u16(v: int) -> void:
		u8(v >> 8)
		u8(v)

	func u32(v: int) -> void:
		u8(v >> 24)
		u8(v >> 16)
		u8(v >> 8)
		u8(v)

	func bytes(b: PackedByteArray) -> void:
		buf.append_array(b)

	func text(value: String, max_bytes: int) -> void:
		var b := value.to_utf8_buffer()
		if b.size() > max_bytes:
			push_error("HolePunchCodec: string of %d bytes exceeds %d" % [b.size(), max_bytes])
			failed = true
			return
		u8(b.size())
		bytes(b)

	func endpoint(ep: Dictionary) -> void:
		text(str(ep.address), MAX_ADDRESS_BYTES)
		u16(int(ep.port))

	func endpoints(eps: Array) -> void:
		var n := mini(eps.size(), MAX_CANDIDATES)
		u8(n)
		for i in n:
			endpoint(eps[i])

	func fixed(b: PackedByteArray, length: int) -> void:
		if b.size() != length:
			push_error("HolePunchCodec: expected %d bytes, got %d" % [length, b.size()])
			failed = true
			return
		bytes(b)

	func done() -> PackedByteArray:
		if buf.size() > MAX_DATAGRAM_BYTES:
			push_error("HolePunchCodec: datagram exceeds %d bytes" % MAX_DATAGRAM_BYTES)
			failed = true
		return PackedByteArray() if failed else buf


class _Reader:
	extends RefCounted

	var buf: PackedByteArray
	var off := 0
	## The first error met; every read after it returns a default value.
	var err := ""

	func _init(data: PackedByteArray) -> void:
		buf = data

	func fail(message: String) -> void:
		if err == "":
			err = message

	## Bytes are left: an optional trailer of a later revision follows.
	func more() -> bool:
		return err == "" and off < buf.size()

	func need(n: int) -> bool:
		if err != "":
			return false
		if off + n > buf.size():
			fail("truncated datagram")
			return false
		return true

	func u8() -> int:
		if not need(1):
			return 0
		off += 1
		return buf[off - 1]

	func u16() -> int:
		var hi := u8()
		return (hi << 8) | u8()

	func u32() -> int:
		var v := 0
		for i in 4:
			v = (v << 8) | u8()
		return v

	func bytes(n: int) -> PackedByteArray:
		if not need(n):
			return PackedByteArray()
		off += n
		return buf.slice(off - n, off)

	func text(max_bytes: int) -> String:
		var length := u8()
		if err != "":
			return ""
		if length > max_bytes:
			fail("string of %d bytes exceeds %d" % [length, max_bytes])
			return ""
		if not need(length):
			return ""
		var raw := buf.slice(off, off + length)
		if not _is_well_formed_utf8(raw):
			fail("string is not well-formed UTF-8")
			return ""
		off += length
		return raw.get_string_from_utf8()

	func endpoint() -> Dictionary:
		var address := text(MAX_ADDRESS_BYTES)
		if err != "":
			return {}
		var ok := address.length() >= 2 and address.length() <= 45
		for i in address.length():
			if not _ADDRESS_CHARS.contains(address[i]):
				ok = false
		if not ok:
			fail("bad address")
			return {}
		var port := u16()
		if err == "" and port == 0:
			fail("port 0")
		return {"address": address, "port": port}

	func endpoints() -> Array[Dictionary]:
		var out: Array[Dictionary] = []
		var n := u8()
		if n > MAX_CANDIDATES:
			fail("too many candidates")
			return out
		for i in n:
			if err != "":
				break
			out.append(endpoint())
		return out

	func code() -> String:
		var c := text(MAX_CODE_BYTES)
		if err == "" and not ERROR_CODES.has(c):
			fail("unknown error code %s" % c)
		return c

	## True when [param data] is well-formed UTF-8 (no overlongs, surrogates or code points
	## beyond U+10FFFF), as a fatal TextDecoder requires.
	func _is_well_formed_utf8(data: PackedByteArray) -> bool:
		var i := 0
		var n := data.size()
		while i < n:
			var b := data[i]
			var extra := 0
			var lo := 0x80
			var hi := 0xBF
			if b <= 0x7F:
				i += 1
				continue
			elif b >= 0xC2 and b <= 0xDF:
				extra = 1
			elif b == 0xE0:
				extra = 2
				lo = 0xA0
			elif (b >= 0xE1 and b <= 0xEC) or b == 0xEE or b == 0xEF:
				extra = 2
			elif b == 0xED:
				extra = 2
				hi = 0x9F
			elif b == 0xF0:
				extra = 3
				lo = 0x90
			elif b >= 0xF1 and b <= 0xF3:
				extra = 3
			elif b == 0xF4:
				extra = 3
				hi = 0x8F
			else:
				return false
			if i + extra >= n:
				return false
			var c1 := data[i + 1]
			if c1 < lo or c1 > hi:
				return false
			for k in range(2, extra + 1):
				var c := data[i + k]
				if c < 0x80 or c > 0xBF:
					return false
			i += extra + 1
		return true
