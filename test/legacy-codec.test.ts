import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CLOSE_REASONS,
  DEFAULT_MAX_PLAYERS_CAP,
  decodeLegacy,
  encodeClose,
  encodeLobby,
  encodeOk,
  encodePeers,
  LEGACY_MAX_PLAYERS,
  type LegacyDecodeResult,
  type LegacyRejectionKind,
  legacyAddressText,
  legacyNameProblem,
  MAX_LEGACY_DATAGRAM_BYTES,
  MAX_LEGACY_NAME_BYTES,
  MAX_LEGACY_NICKNAME_BYTES,
} from '../src/protocol/legacy.js';
import { readPluginServerLine } from '../src/protocol/legacy-client.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const decodeText = (s: string, cap?: number): LegacyDecodeResult =>
  decodeLegacy(text(s), cap === undefined ? {} : { maxPlayersCap: cap });
const str = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

function assertRejected(result: LegacyDecodeResult, kind: LegacyRejectionKind): void {
  assert.equal(result.ok, false, `expected rejection ${kind}, got ${JSON.stringify(result)}`);
  if (!result.ok) assert.equal(result.error.kind, kind);
}

describe('legacy codec: decoding every client message', () => {
  test('rs:KEY:MAX registers a session', () => {
    assert.deepEqual(decodeText('rs:lobby1:4'), {
      ok: true,
      msg: { type: 'register_session', key: 'lobby1', maxPlayers: 4 },
    });
  });

  test('rc:NAME:KEY:NICKNAME registers a client, an empty nickname included', () => {
    assert.deepEqual(decodeText('rc:p1:lobby1:Alice'), {
      ok: true,
      msg: { type: 'register_client', name: 'p1', key: 'lobby1', nickname: 'Alice' },
    });
    assert.deepEqual(decodeText('rc:p1:lobby1:'), {
      ok: true,
      msg: { type: 'register_client', name: 'p1', key: 'lobby1', nickname: '' },
    });
  });

  test('ep:KEY asks for the peer exchange', () => {
    assert.deepEqual(decodeText('ep:lobby1'), {
      ok: true,
      msg: { type: 'exchange_peers', key: 'lobby1' },
    });
  });

  test('cc:NAME checks a client out', () => {
    assert.deepEqual(decodeText('cc:p1'), { ok: true, msg: { type: 'check_out', name: 'p1' } });
  });

  test('rc:NAME:KEY (the master revisions, no nickname) registers with NAME as the nickname', () => {
    assert.deepEqual(decodeText('rc:p1:lobby1'), {
      ok: true,
      msg: { type: 'register_client', name: 'p1', key: 'lobby1', nickname: 'p1' },
    });
  });

  test('cs:KEY:REASON closes a session; the reason ends at the next colon, as the original split it', () => {
    assert.deepEqual(decodeText('cs:lobby1:Disconnected: Session full'), {
      ok: true,
      msg: { type: 'close_session', key: 'lobby1', reason: 'Disconnected' },
    });
    assert.deepEqual(decodeText('cs:lobby1'), {
      ok: true,
      msg: { type: 'close_session', key: 'lobby1', reason: undefined },
    });
  });

  test('goodbye is understood (and carries nothing)', () => {
    assert.deepEqual(decodeText('goodbye'), { ok: true, msg: { type: 'goodbye' } });
  });

  test('non-ASCII UTF-8 names and nicknames pass through', () => {
    assert.deepEqual(decodeText('rc:jörg:schloß:Jörg 🎮'), {
      ok: true,
      msg: { type: 'register_client', name: 'jörg', key: 'schloß', nickname: 'Jörg 🎮' },
    });
  });

  test('one trailing newline (hand-typed with nc) is tolerated, CRLF too', () => {
    assert.deepEqual(decodeText('rs:k:2\n'), decodeText('rs:k:2'));
    assert.deepEqual(decodeText('cc:p1\r\n'), decodeText('cc:p1'));
  });
});

describe('legacy codec: every refusal has its kind', () => {
  test('an empty datagram (or a lone newline) is refused as empty', () => {
    assertRejected(decodeLegacy(new Uint8Array(0)), 'empty');
    assertRejected(decodeText('\n'), 'empty');
  });

  test('more than 1 KiB is refused as oversized, exactly 1 KiB is read', () => {
    const key = 'k'.repeat(MAX_LEGACY_DATAGRAM_BYTES - 'rs::2'.length);
    assert.equal(decodeText(`rs:${key}:2`).ok, true);
    assertRejected(decodeText(`rs:${key}x:2`), 'oversized');
  });

  test('invalid UTF-8 is refused as not_utf8', () => {
    assertRejected(decodeLegacy(Uint8Array.of(0x72, 0x73, 0x3a, 0xff, 0x3a, 0x32)), 'not_utf8');
    assertRejected(decodeLegacy(Uint8Array.from([...text('rc:n:k:'), 0xc3])), 'not_utf8');
    assertRejected(decodeLegacy(Uint8Array.from([...text('cs:k:'), 0xed, 0xa0, 0x80])), 'not_utf8');
  });

  test('binary and control characters are refused as control_chars', () => {
    assertRejected(decodeLegacy(Uint8Array.of(0x72, 0x73, 0x00, 0x01)), 'control_chars');
    assertRejected(decodeText('rc:a\tb:k:n'), 'control_chars');
    assertRejected(decodeText('rs:k:2\n\n'), 'control_chars');
    assertRejected(decodeText('cc:p\x7f'), 'control_chars');
  });

  test('missing fields are refused as too_few_fields (the original raised IndexError)', () => {
    for (const message of ['rs', 'rs:k', 'rc:n', 'rc', 'ep', 'cc', 'cs']) {
      assertRejected(decodeText(message), 'too_few_fields');
    }
  });

  test('fields past the ones a message reads are ignored, as the original ignored them', () => {
    assert.deepEqual(decodeText('rs:k:2:x'), decodeText('rs:k:2'));
    assert.deepEqual(decodeText('ep:k:x'), decodeText('ep:k'));
    assert.deepEqual(decodeText('cc:n:x'), decodeText('cc:n'));
    assert.deepEqual(decodeText('goodbye:x'), decodeText('goodbye'));
    // A nickname typed with a colon is cut there: the original's split(":")[3].
    assert.deepEqual(decodeText('rc:n:k:Jo:hn:x'), {
      ok: true,
      msg: { type: 'register_client', name: 'n', key: 'k', nickname: 'Jo' },
    });
  });

  test('empty fields are read as the original read them: empty strings', () => {
    assert.deepEqual(decodeText('rc::k:'), {
      ok: true,
      msg: { type: 'register_client', name: '', key: 'k', nickname: '' },
    });
    assert.deepEqual(decodeText('ep:'), { ok: true, msg: { type: 'exchange_peers', key: '' } });
  });

  test('names that cannot be relayed are named by legacyNameProblem, as the close: reason', () => {
    assert.equal(legacyNameProblem('a,b', 'nick'), CLOSE_REASONS.commaInName);
    assert.equal(legacyNameProblem('a', 'Smith, J'), CLOSE_REASONS.commaInName);
    const name = 'é'.repeat(MAX_LEGACY_NAME_BYTES / 2); // 2 bytes each: exactly the limit
    const nickname = 'é'.repeat(MAX_LEGACY_NICKNAME_BYTES / 2);
    assert.equal(legacyNameProblem(name, nickname), undefined);
    assert.equal(legacyNameProblem(`${name}x`, 'n'), CLOSE_REASONS.nameTooLong);
    assert.equal(legacyNameProblem('n', `${nickname}x`), CLOSE_REASONS.nameTooLong);
    assert.equal(legacyNameProblem('n', '🎮'.repeat(8)), undefined); // 4 bytes each
    assert.equal(legacyNameProblem('n', '🎮'.repeat(9)), CLOSE_REASONS.nameTooLong);
    // rc:NAME:KEY: the nickname is NAME, held to NAME's limit (a 38-character Windows id).
    const id = '{3F2504E0-4F89-11D3-9A0C-0305E82C3301}';
    assert.equal(legacyNameProblem(id, id), undefined);
  });

  test('MAX that is not a plain number in 1..cap is refused as bad_max', () => {
    for (const max of ['', 'x', '-1', '0', '+3', ' 3', '3.0', '1e1', '17', '9999999']) {
      assertRejected(decodeText(`rs:k:${max}`), 'bad_max');
    }
    assert.equal(decodeText(`rs:k:${LEGACY_MAX_PLAYERS}`).ok, true);
    assert.equal(decodeText(`rs:k:${DEFAULT_MAX_PLAYERS_CAP}`, DEFAULT_MAX_PLAYERS_CAP).ok, true);
    assert.equal(decodeText('rs:k:1').ok, true);
    assertRejected(decodeText('rs:k:9', 8), 'bad_max');
    assert.equal(decodeText('rs:k:100', 128).ok, true);
  });

  test('an unknown type is refused as unknown_type, peer handshake messages included', () => {
    for (const message of ['xx:1', 'RS:k:2', 'rsx:k:2', 'greet:a:1:2', 'go:a', 'hello', ':']) {
      assertRejected(decodeText(message), 'unknown_type');
    }
  });
});

describe('legacy codec: encoding server replies byte for byte', () => {
  test('ok:PORT', () => {
    assert.equal(str(encodeOk(40123)), 'ok:40123');
  });

  test('lobby:NICKS:MAX in registration order', () => {
    assert.equal(str(encodeLobby(['Alice', 'Bob'], 4)), 'lobby:Alice,Bob:4');
    assert.equal(str(encodeLobby(['Alice'], 2)), 'lobby:Alice:2');
  });

  test('peers: entries with the HOSTING field True/False', () => {
    assert.equal(
      str(
        encodePeers([
          { name: 'h', address: '198.51.100.7', port: 4000, hosting: true },
          { name: 'p', address: '203.0.113.9', port: 5123, hosting: false },
        ]),
      ),
      'peers:h:198.51.100.7:4000:True,p:203.0.113.9:5123:False',
    );
    assert.equal(str(encodePeers([])), 'peers:');
  });

  test("close:REASON with the original's reason strings", () => {
    assert.equal(
      str(encodeClose(CLOSE_REASONS.sessionExists)),
      "close:'Tried to create existing session'",
    );
    assert.equal(
      str(encodeClose(CLOSE_REASONS.clientRegistered)),
      "close:'Client already registered'",
    );
    assert.equal(
      str(encodeClose(CLOSE_REASONS.sessionNotFound)),
      "close:'Client registered for non-existing session'",
    );
    assert.equal(str(encodeClose(CLOSE_REASONS.sessionFull)), "close:'Session full'");
    assert.equal(str(encodeClose(CLOSE_REASONS.sessionExpired)), 'close:Session closed.');
    assert.equal(str(encodeClose(CLOSE_REASONS.serverShutdown)), 'close:Server shutting down');
  });

  test('addresses: IPv4-mapped IPv6 is written as plain IPv4, native IPv6 cannot be written', () => {
    assert.equal(legacyAddressText('203.0.113.5'), '203.0.113.5');
    assert.equal(legacyAddressText('::ffff:203.0.113.5'), '203.0.113.5');
    assert.equal(legacyAddressText('::FFFF:127.0.0.1'), '127.0.0.1');
    assert.equal(legacyAddressText('2001:db8::1'), undefined);
    assert.equal(legacyAddressText('::1'), undefined);
  });
});

describe('legacy codec: server lines as each plugin revision reads them', () => {
  const read = (revision: Parameters<typeof readPluginServerLine>[0], s: string) =>
    readPluginServerLine(revision, text(s));

  test('lobby: and close: are read by the lobby revision only; close: reason ends at a colon', () => {
    assert.deepEqual(read('godot3-lobby', 'lobby:ann,bob:4:extra'), {
      type: 'lobby',
      nicknames: ['ann', 'bob'],
      maxPlayers: 4,
    });
    assert.deepEqual(read('godot3-lobby', 'lobby::2'), {
      type: 'lobby',
      nicknames: [],
      maxPlayers: 2,
    });
    const noMax = read('godot3-lobby', 'lobby:ann');
    assert.ok(noMax.type === 'lobby' && Number.isNaN(noMax.maxPlayers));
    assert.deepEqual(read('godot3-lobby', 'close:Session full:x'), {
      type: 'close',
      reason: 'Session full',
    });
    for (const revision of ['godot3-master', 'godot4-master'] as const) {
      assert.deepEqual(read(revision, 'lobby:ann:2'), { type: 'other' });
      assert.deepEqual(read(revision, 'close:Session full'), { type: 'other' });
    }
  });

  test('ok: needs the colon in the lobby revision; the master ones take any "ok" prefix', () => {
    assert.deepEqual(read('godot3-lobby', 'ok:4242'), { type: 'ok', port: 4242 });
    assert.deepEqual(read('godot3-lobby', 'ok:0'), { type: 'ok', port: undefined });
    assert.deepEqual(read('godot3-lobby', 'okay'), { type: 'other' });
    assert.deepEqual(read('godot3-master', 'okay'), { type: 'ok', port: undefined });
    assert.deepEqual(read('godot4-master', 'ok:4242'), { type: 'ok', port: 4242 });
  });

  test('peers: the lobby revision reads every entry, the master ones the first one only', () => {
    const line = 'peers:ann:203.0.113.5:4100:True,bob:198.51.100.7:4200:False';
    assert.deepEqual(read('godot3-lobby', line), {
      type: 'peers',
      body: line.slice(6),
      entries: {
        ok: true,
        peers: [
          { name: 'ann', address: '203.0.113.5', port: 4100 },
          { name: 'bob', address: '198.51.100.7', port: 4200 },
        ],
      },
    });
    assert.deepEqual(read('godot3-master', line), {
      type: 'peers',
      body: line.slice(6),
      entries: { ok: true, peers: [{ name: 'ann', address: '203.0.113.5', port: 4100 }] },
    });
    assert.deepEqual(read('godot3-lobby', 'peers:'), {
      type: 'peers',
      body: '',
      entries: { ok: true, peers: [] },
    });
    assert.deepEqual(read('godot3-master', 'peersXY'), {
      type: 'peers',
      body: 'Y',
      entries: { ok: true, peers: [] },
    });
    assert.deepEqual(read('godot3-lobby', 'peersXY'), { type: 'other' });
  });

  test("peers: Godot 4's right(6) keeps the last 6 characters, which never parse", () => {
    assert.deepEqual(read('godot4-master', 'peers:ann:203.0.113.5:4100:True'), {
      type: 'peers',
      body: '0:True',
      entries: { ok: false, entry: '0:True' },
    });
  });

  test('peers: an entry with a missing field or a bad port is what the plugin chokes on', () => {
    assert.deepEqual(read('godot3-lobby', 'peers:ann:203.0.113.5:4100,bob:198.51.100.7'), {
      type: 'peers',
      body: 'ann:203.0.113.5:4100,bob:198.51.100.7',
      entries: { ok: false, entry: 'bob:198.51.100.7' },
    });
    assert.deepEqual(read('godot3-master', 'peers:ann:203.0.113.5:0'), {
      type: 'peers',
      body: 'ann:203.0.113.5:0',
      entries: { ok: false, entry: 'ann:203.0.113.5:0' },
    });
  });
});
