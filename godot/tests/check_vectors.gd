extends SceneTree
## Checks the addon's GDScript codec against the golden vectors the TypeScript codec made
## (v2_vectors.json beside this script): decode(bytes) gives the fields, encode(fields) gives
## the bytes, and every malformed datagram gives the same error, code and request id.
## Prints one JSON line per failure and a last summary line; exits 0 when all pass.
##
##   godot --headless --path PROJECT --script res://tests/check_vectors.gd

const Codec := preload("res://addons/holepunch/holepunch_codec.gd")
const BYTE_FIELDS: Array[String] = ["token", "punchKey", "id", "bindToken", "proof", "tag"]

var _passed := 0
var _failed := 0


func _init() -> void:
	var text := FileAccess.get_file_as_string("res://tests/v2_vectors.json")
	var vectors: Variant = JSON.parse_string(text)
	if typeof(vectors) != TYPE_DICTIONARY:
		_line({"godot": "vectors", "error": "cannot read res://tests/v2_vectors.json"})
		quit(2)
		return
	_check("error codes", _same(Codec.ERROR_CODES, vectors.error_codes),
			{"gdscript": Codec.ERROR_CODES, "typescript": vectors.error_codes})
	_check("types", _same(Codec.TYPES, vectors.types),
			{"gdscript": Codec.TYPES, "typescript": vectors.types})
	for vector: Dictionary in vectors.messages:
		_check_message(vector)
	for vector: Dictionary in vectors.malformed:
		_check_malformed(vector)
	_line({"godot": "vectors", "passed": _passed, "failed": _failed,
			"engine": Engine.get_version_info()["string"]})
	quit(0 if _failed == 0 else 1)


func _check_message(vector: Dictionary) -> void:
	var data := _unhex(vector.hex)
	var expected: Dictionary = vector.fields
	var decoded := Codec.decode(data)
	if not decoded.ok:
		_check("decode " + vector.name, false, {"error": decoded.error})
		return
	var msg: Dictionary = decoded.msg
	var is_punch: bool = msg.type == "punch" or msg.type == "punch_ack"
	var is_push: bool = Codec.PUSH_TYPES.has(msg.type)
	var is_signed_bind: bool = msg.type == "relay_bind" and expected.has("key")
	var got: Dictionary = _to_json(msg)
	got.erase("signed")
	var want := expected.duplicate(true)
	want.erase("key")
	want.erase("tag_valid")
	_check("decode " + vector.name, _same(got, want), {"got": got, "want": want})
	var fields: Dictionary = _from_json(expected)
	var encoded: PackedByteArray
	if is_signed_bind:
		var bind_token := _unhex(expected.key)
		var proof := Codec.relay_bind_proof(bind_token, int(msg.requestId), msg.id)
		_check("tag " + vector.name, (proof == msg.proof) == bool(expected.tag_valid),
				{"proof": proof.hex_encode()})
		if not expected.tag_valid:
			return
		encoded = Codec.encode_relay_bind(bind_token, int(msg.requestId), msg.id)
	elif is_punch or is_push:
		var key := _unhex(expected.key)
		var valid := (Codec.verify_push(key, msg) if is_push
				else Codec.verify_punch_tag(key, msg.signed, msg.tag))
		_check("tag " + vector.name, valid == bool(expected.tag_valid), {"valid": valid})
		if not expected.tag_valid:
			return
		encoded = Codec.encode_push(key, fields) if is_push else Codec.encode_punch(key, fields)
	else:
		encoded = Codec.encode(fields)
	_check("encode " + vector.name, encoded.hex_encode() == vector.hex,
			{"got": encoded.hex_encode(), "want": vector.hex})


func _check_malformed(vector: Dictionary) -> void:
	var decoded := Codec.decode(_unhex(vector.hex))
	var got := {"ok": decoded.ok, "error": decoded.get("error")}
	var want := {"ok": false, "error": vector.error}
	if decoded.has("code") or vector.has("code"):
		got.code = decoded.get("code")
		want.code = vector.get("code")
	if decoded.has("requestId") or vector.has("request_id"):
		got.requestId = decoded.get("requestId")
		want.requestId = vector.get("request_id")
	_check("malformed " + vector.name, _same(got, want), {"got": got, "want": want})


func _check(what: String, ok: bool, detail: Dictionary) -> void:
	if ok:
		_passed += 1
		return
	_failed += 1
	_line({"godot": "vector_failed", "vector": what, "detail": _to_json(detail)})


## A decoded value as JSON would hold it: byte arrays as hex.
func _to_json(value: Variant) -> Variant:
	if value is PackedByteArray:
		return value.hex_encode()
	if value is Dictionary:
		var out := {}
		for k: Variant in value:
			out[k] = _to_json(value[k])
		return out
	if value is Array:
		var out := []
		for v: Variant in value:
			out.append(_to_json(v))
		return out
	return value


## JSON fields to a codec message: numbers to int, byte fields from hex.
func _from_json(value: Variant, key: String = "") -> Variant:
	if value is Dictionary:
		var out := {}
		for k: String in value:
			out[k] = _from_json(value[k], k)
		return out
	if value is Array:
		var out := []
		for v: Variant in value:
			out.append(_from_json(v))
		return out
	if value is float:
		return int(value)
	if value is String and BYTE_FIELDS.has(key):
		return _unhex(value)
	return value


## Deep equality where JSON's floats equal the codec's ints.
func _same(a: Variant, b: Variant) -> bool:
	if (a is int or a is float) and (b is int or b is float):
		return float(a) == float(b)
	if a is Dictionary and b is Dictionary:
		if a.size() != b.size():
			return false
		for k: Variant in a:
			if not b.has(k) or not _same(a[k], b[k]):
				return false
		return true
	if (a is Array or a is PackedStringArray) and (b is Array or b is PackedStringArray):
		if a.size() != b.size():
			return false
		for i in a.size():
			if not _same(a[i], b[i]):
				return false
		return true
	return typeof(a) == typeof(b) and a == b


func _unhex(text: String) -> PackedByteArray:
	var out := PackedByteArray()
	for i in range(0, text.length(), 2):
		out.append(text.substr(i, 2).hex_to_int())
	return out


func _line(data: Dictionary) -> void:
	print(JSON.stringify(data))
