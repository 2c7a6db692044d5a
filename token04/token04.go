// Package token04 mints and verifies Token04 tokens, the tokens a client
// presents to log into a room and publish streams.
//
// A business server imports this package to mint tokens for its users with
// the app's ServerSecret; OnAir's own services use it to verify them. The
// wire format is the vendor's, byte for byte, so tokens minted by the
// vendor's public generators verify here and tokens minted here verify
// wherever the vendor's format is understood.
//
// # Format
//
// The plaintext is the JSON object
//
//	{"app_id":uint32,"user_id":string,"ctime":int64,"expire":int64,"nonce":int32,"payload":string}
//
// with times in Unix seconds and expire = ctime + ttl. The 32-character
// ServerSecret, taken as its 32 raw bytes, is the AES-256 key. A token is
// "04" followed by standard, padded base64 of a big-endian blob in one of
// two layouts:
//
//	CBC: int64 expire | u16 16 | 16-byte IV    | u16 n | AES-256-CBC/PKCS#7 ciphertext (n bytes)
//	GCM: int64 expire | u16 12 | 12-byte nonce | u16 n | AES-256-GCM ciphertext+tag (n bytes) | u8 1
//
// Verify accepts both. Mint writes GCM unless asked for CBC: CBC is what
// the vendor's public generators still emit, but it has no integrity
// protection, so a CBC token can be altered in transit in limited ways
// (see Verify) while a GCM token cannot be altered at all.
//
// # Privileges
//
// The payload field may hold a privilege payload, itself a JSON object in a
// string:
//
//	{"room_id":"r1","privilege":{"1":1,"2":0},"stream_id_list":null}
//
// Key "1" is the login privilege and key "2" the publish privilege; 1
// grants and 0 denies. An empty payload makes a basic token, which allows
// everything. Within a present payload every member only ever narrows
// what is allowed, and an absent member narrows nothing: a missing
// privilege key grants, a missing or empty room_id allows any room, and a
// missing or null stream_id_list allows any stream ID. This matches the
// basic token (no payload, no limits) and lets a business server write
// only the restriction it cares about, such as just a room_id.
package token04

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/onair-dev/onair/errcode"
)

// Version is the prefix every Token04 token starts with.
const Version = "04"

// SecretLen is the length in bytes of a ServerSecret, which is used
// directly as an AES-256 key.
const SecretLen = 32

// Mode selects the encryption layout of a minted token.
type Mode int

const (
	// GCM is AES-256-GCM, the vendor's recommended layout. It is the zero
	// Mode so that a zero Options mints the layout that cannot be tampered
	// with.
	GCM Mode = iota
	// CBC is AES-256-CBC with PKCS#7 padding, the layout the vendor's public
	// generators emit. Mint it only for peers that cannot read GCM.
	CBC
)

// String returns "GCM" or "CBC".
func (m Mode) String() string {
	switch m {
	case GCM:
		return "GCM"
	case CBC:
		return "CBC"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Layout constants of the binary blob.
const (
	expireLen   = 8
	lenFieldLen = 2
	cbcIVLen    = aes.BlockSize // 16
	gcmNonceLen = 12
	gcmTagLen   = 16
	// gcmModeByte trails a GCM blob. The vendor numbers CBC 0 and GCM 1,
	// but its CBC generators write no mode byte at all, so only 1 is ever
	// on the wire.
	gcmModeByte = 1
	// maxCipherLen is the most a u16 length field can describe.
	maxCipherLen = 0xFFFF
	// maxBlobLen bounds the decoded blob: the longest IV, the longest
	// ciphertext and the mode byte.
	maxBlobLen = expireLen + lenFieldLen + cbcIVLen + lenFieldLen + maxCipherLen + 1
)

// maxEncodedLen bounds the base64 part of a token before it is decoded,
// so an oversized token costs nothing but a length comparison.
var maxEncodedLen = base64.StdEncoding.EncodedLen(maxBlobLen)

// b64 is strict so that each blob has exactly one accepted spelling:
// non-zero trailing bits would otherwise let different strings verify as
// the same token. Strict decoding still skips CR and LF, which
// decodeToken rejects itself.
var b64 = base64.StdEncoding.Strict()

// Options adjusts Mint. A nil *Options mints a basic GCM token at the
// current time with randomness from crypto/rand.
type Options struct {
	// Mode is the encryption layout; the zero value is GCM.
	Mode Mode
	// Privilege, if not nil, is written as the privilege payload. Nil
	// mints a basic token, which allows every room, login and publish.
	Privilege *Privilege
	// Now returns the creation time; nil means time.Now. Tests and
	// replays set it to mint reproducible tokens.
	Now func() time.Time
	// Rand is the source of the IV or nonce and of the token nonce; nil
	// means crypto/rand. It must be unpredictable outside tests: a
	// repeated GCM nonce under one secret breaks GCM.
	Rand io.Reader
}

// tokenJSON is the plaintext of a token, with fields in the order the
// format lists them.
type tokenJSON struct {
	AppID   uint32 `json:"app_id"`
	UserID  string `json:"user_id"`
	CTime   int64  `json:"ctime"`
	Expire  int64  `json:"expire"`
	Nonce   int32  `json:"nonce"`
	Payload string `json:"payload"`
}

// Mint returns a token that lets userID of app appID in for ttl, encrypted
// with the app's 32-character ServerSecret.
//
// ttl is counted in whole seconds, as the format stores Unix seconds, and
// must be at least one second. Errors are *errcode.Error: InvalidParameter
// for bad arguments and TokenInternal when randomness is unavailable.
func Mint(appID uint32, userID, secret string, ttl time.Duration, opts *Options) (string, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	switch {
	case appID == 0:
		return "", errcode.New(errcode.InvalidParameter, "token04: AppID must not be 0")
	case userID == "":
		return "", errcode.New(errcode.InvalidParameter, "token04: userID must not be empty")
	case len(secret) != SecretLen:
		return "", errcode.Newf(errcode.InvalidParameter, "token04: ServerSecret must be %d bytes, got %d", SecretLen, len(secret))
	case ttl < time.Second:
		return "", errcode.Newf(errcode.InvalidParameter, "token04: ttl must be at least 1s, got %v", ttl)
	case o.Mode != GCM && o.Mode != CBC:
		return "", errcode.Newf(errcode.InvalidParameter, "token04: unknown mode %v", o.Mode)
	}

	var payload string
	if o.Privilege != nil {
		var err error
		if payload, err = o.Privilege.Payload(); err != nil {
			return "", err
		}
	}

	var nb [4]byte
	if _, err := io.ReadFull(o.Rand, nb[:]); err != nil {
		return "", errcode.Newf(errcode.TokenInternal, "token04: reading randomness: %v", err)
	}
	ctime := o.Now().Unix()
	expire := ctime + int64(ttl/time.Second)
	if expire < ctime {
		return "", errcode.Newf(errcode.InvalidParameter, "token04: ttl %v overflows the expiry time", ttl)
	}
	plaintext, err := json.Marshal(tokenJSON{
		AppID:  appID,
		UserID: userID,
		CTime:  ctime,
		Expire: expire,
		// Non-negative like the vendor's Go generator, so that peers that
		// read the nonce as an unsigned or positive number do not choke.
		Nonce:   int32(binary.BigEndian.Uint32(nb[:]) & 0x7FFFFFFF),
		Payload: payload,
	})
	if err != nil {
		return "", errcode.Newf(errcode.InvalidParameter, "token04: encoding token: %v", err)
	}
	return seal(o.Mode, secret, plaintext, expire, o.Rand)
}

// seal encrypts plaintext and lays out the token. It is separate from Mint
// so that tests can seal plaintexts Mint would never produce.
func seal(mode Mode, secret string, plaintext []byte, expire int64, random io.Reader) (string, error) {
	block, err := aes.NewCipher([]byte(secret))
	if err != nil {
		return "", errcode.Newf(errcode.InvalidParameter, "token04: ServerSecret: %v", err)
	}
	var iv, ct []byte
	switch mode {
	case GCM:
		if len(plaintext)+gcmTagLen > maxCipherLen {
			return "", errcode.New(errcode.InvalidParameter, "token04: token too long; shorten the payload")
		}
		iv = make([]byte, gcmNonceLen)
		if _, err := io.ReadFull(random, iv); err != nil {
			return "", errcode.Newf(errcode.TokenInternal, "token04: reading randomness: %v", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return "", errcode.Newf(errcode.TokenInternal, "token04: %v", err)
		}
		ct = aead.Seal(nil, iv, plaintext, nil)
	case CBC:
		pad := aes.BlockSize - len(plaintext)%aes.BlockSize
		if len(plaintext)+pad > maxCipherLen {
			return "", errcode.New(errcode.InvalidParameter, "token04: token too long; shorten the payload")
		}
		iv = make([]byte, cbcIVLen)
		if _, err := io.ReadFull(random, iv); err != nil {
			return "", errcode.Newf(errcode.TokenInternal, "token04: reading randomness: %v", err)
		}
		ct = append(bytes.Clone(plaintext), bytes.Repeat([]byte{byte(pad)}, pad)...)
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, ct)
	default:
		return "", errcode.Newf(errcode.InvalidParameter, "token04: unknown mode %v", mode)
	}

	blob := make([]byte, 0, expireLen+lenFieldLen+len(iv)+lenFieldLen+len(ct)+1)
	blob = binary.BigEndian.AppendUint64(blob, uint64(expire))
	blob = binary.BigEndian.AppendUint16(blob, uint16(len(iv)))
	blob = append(blob, iv...)
	blob = binary.BigEndian.AppendUint16(blob, uint16(len(ct)))
	blob = append(blob, ct...)
	if mode == GCM {
		blob = append(blob, gcmModeByte)
	}
	return Version + base64.StdEncoding.EncodeToString(blob), nil
}

// Claims is what a verified token says.
type Claims struct {
	AppID      uint32
	UserID     string
	CreateTime time.Time
	ExpireTime time.Time
	Nonce      int32
	// Payload is the payload field as minted; empty for a basic token.
	Payload string
	// Privilege is the parsed privilege payload, or nil for a basic token.
	Privilege *Privilege
	// Mode is the layout the token arrived in, so that operators can see
	// how many clients still hold CBC tokens.
	Mode Mode
}

// The errors Verify returns. Each is a fixed value: in particular every
// decoding and decryption failure is the one errBadToken, so that a caller
// probing with altered tokens cannot tell which step rejected them.
var (
	errNoToken       = errcode.New(errcode.NoToken, "token04: no token; mint one on your business server with the app's ServerSecret")
	errWrongVersion  = errcode.New(errcode.TokenWrongVersion, `token04: token does not start with "04"; only Token04 tokens are accepted`)
	errBadToken      = errcode.New(errcode.LoginAuthFailed, "token04: token is malformed or was not minted with this app's ServerSecret")
	errNotJSON       = errcode.New(errcode.TokenPayloadNotJSON, "token04: token plaintext is not Token04 JSON; mint it with a Token04 generator")
	errPayload       = errcode.New(errcode.TokenPayloadNotJSON, `token04: token payload is not privilege JSON like {"room_id":"r","privilege":{"1":1,"2":1},"stream_id_list":null}`)
	errAppID         = errcode.New(errcode.TokenAppIDMismatch, "token04: token was minted for another AppID; mint it with this app's AppID")
	errUserID        = errcode.New(errcode.TokenUserIDMismatch, "token04: token was minted for another userID; mint it for the userID that logs in")
	errSecretInvalid = errcode.New(errcode.TokenInternal, "token04: the app's ServerSecret is not 32 bytes; check the app's configuration")
)

// Verify checks token for app appID and user userID against the app's
// ServerSecret at time now, and returns its claims. A zero now means
// time.Now, so that a forgotten argument cannot make every token current.
//
// Errors are *errcode.Error with these codes, checked in this order:
//
//   - NoToken (1002067): token is empty.
//   - TokenWrongVersion (1002079): token does not start with "04".
//   - TokenInternal (1002074): secret is not 32 bytes, a server
//     misconfiguration rather than a bad token.
//   - LoginAuthFailed (1002033): anything else wrong with the token
//     itself: bad base64, a truncated blob, wrong or inconsistent lengths,
//     bad padding, a failed GCM tag, a wrong secret, or an outer expiry
//     that differs from the encrypted one. All share one message.
//   - TokenPayloadNotJSON (1002075): the payload is present but not
//     privilege JSON, or a GCM plaintext is not Token04 JSON.
//   - TokenAppIDMismatch (1002076), TokenUserIDMismatch (1002077).
//   - TokenExpired (1002078): now is at or after the expiry time.
//
// A CBC plaintext that is not Token04 JSON is reported as LoginAuthFailed,
// not TokenPayloadNotJSON. CBC has no integrity check, so its plaintext is
// only known to be what the minter wrote once it parses; and a distinct
// code for "padding was fine but the JSON was not" would be a padding
// oracle, which lets anyone decrypt tokens and forge new ones. For the same
// reason the padding is checked in constant time and the plaintext is
// parsed whether or not the padding was valid. GCM plaintexts are
// authenticated before they are parsed, so for them the distinct code
// tells a developer something true and reveals nothing.
//
// Because CBC is malleable, a holder of a CBC token can flip bits of its
// first plaintext block through the IV, and garble one block to flip bits
// in the next. Every known generator puts only the opening brace and the
// app_id in the first block, keys are matched exactly and must each appear
// once, and garbled blocks rarely stay valid UTF-8 JSON, so such edits are
// rejected; but only GCM rules tampering out by construction.
func Verify(token string, appID uint32, userID, secret string, now time.Time) (*Claims, error) {
	return verify(token, appID, &userID, secret, now)
}

// VerifyAnyUser is Verify without the userID check, for callers that learn
// the user from the token, such as a WHIP endpoint whose URL names no user.
// The caller must then use Claims.UserID as the authenticated user.
func VerifyAnyUser(token string, appID uint32, secret string, now time.Time) (*Claims, error) {
	return verify(token, appID, nil, secret, now)
}

func verify(token string, appID uint32, userID *string, secret string, now time.Time) (*Claims, error) {
	if now.IsZero() {
		now = time.Now()
	}
	c, err := open(token, secret)
	if err != nil {
		return nil, err
	}
	if c.AppID != appID {
		return nil, errAppID
	}
	if userID != nil && c.UserID != *userID {
		return nil, errUserID
	}
	if !now.Before(c.ExpireTime) {
		return nil, errcode.Newf(errcode.TokenExpired, "token04: token expired at %s; mint a new one", c.ExpireTime.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// open decodes and decrypts token and parses its claims, without checking
// them against anything.
func open(token, secret string) (*Claims, *errcode.Error) {
	if token == "" {
		return nil, errNoToken
	}
	if !strings.HasPrefix(token, Version) {
		return nil, errWrongVersion
	}
	if len(secret) != SecretLen {
		return nil, errSecretInvalid
	}
	enc := token[len(Version):]
	// The length bound comes before decoding so a huge token is not
	// decoded; CR and LF are refused because the decoder would skip them,
	// giving one blob many accepted spellings.
	if len(enc) > maxEncodedLen || strings.ContainsAny(enc, "\r\n") {
		return nil, errBadToken
	}
	blob, err := b64.DecodeString(enc)
	if err != nil {
		return nil, errBadToken
	}
	b, ok := parseBlob(blob)
	if !ok {
		return nil, errBadToken
	}
	block, err := aes.NewCipher([]byte(secret))
	if err != nil {
		return nil, errSecretInvalid
	}

	var (
		t      tokenJSON
		parsed bool
	)
	switch b.mode {
	case GCM:
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, errBadToken
		}
		pt, err := aead.Open(b.ct[:0], b.iv, b.ct, nil)
		if err != nil {
			return nil, errBadToken
		}
		if t, parsed = parseToken(pt); !parsed {
			return nil, errNotJSON
		}
	case CBC:
		pt := b.ct // decrypted in place: blob is our own copy
		cipher.NewCBCDecrypter(block, b.iv).CryptBlocks(pt, pt)
		n, padOK := pkcs7Len(pt)
		// Parse even when the padding is bad and decide once afterwards,
		// so that neither the result nor, coarsely, the time taken shows
		// which of the two failed.
		t, parsed = parseToken(pt[:n])
		if padOK&boolInt(parsed) != 1 {
			return nil, errBadToken
		}
	}
	// The outer expiry is outside the ciphertext; requiring it to match the
	// encrypted one stops it from being edited to mislead anyone who reads
	// it without decrypting.
	if t.Expire != b.expire {
		return nil, errBadToken
	}
	c := &Claims{
		AppID:      t.AppID,
		UserID:     t.UserID,
		CreateTime: time.Unix(t.CTime, 0),
		ExpireTime: time.Unix(t.Expire, 0),
		Nonce:      t.Nonce,
		Payload:    t.Payload,
		Mode:       b.mode,
	}
	if t.Payload != "" {
		p, ok := parsePayload(t.Payload)
		if !ok {
			return nil, errPayload
		}
		c.Privilege = p
	}
	return c, nil
}

// blob is a decoded token blob. iv and ct alias the decoded bytes.
type blob struct {
	mode   Mode
	expire int64
	iv, ct []byte
}

// parseBlob splits a decoded token into its fields, checking every length
// against what is left so that no field can point past the end.
func parseBlob(data []byte) (blob, bool) {
	var b blob
	if len(data) < expireLen+lenFieldLen {
		return b, false
	}
	b.expire = int64(binary.BigEndian.Uint64(data))
	ivLen := int(binary.BigEndian.Uint16(data[expireLen:]))
	rest := data[expireLen+lenFieldLen:]
	if len(rest) < ivLen+lenFieldLen {
		return b, false
	}
	b.iv, rest = rest[:ivLen], rest[ivLen:]
	n := int(binary.BigEndian.Uint16(rest))
	rest = rest[lenFieldLen:]
	if len(rest) < n {
		return b, false
	}
	b.ct, rest = rest[:n], rest[n:]
	// The layout is told apart by the IV length and the trailer together,
	// and both must agree; anything else is not a layout we know.
	switch {
	case ivLen == cbcIVLen && len(rest) == 0:
		b.mode = CBC
		return b, n > 0 && n%aes.BlockSize == 0
	case ivLen == gcmNonceLen && len(rest) == 1 && rest[0] == gcmModeByte:
		b.mode = GCM
		return b, n >= gcmTagLen
	}
	return b, false
}

// pkcs7Len returns the length of pt without its PKCS#7 padding and 1 if
// the padding is valid; if it is not, it returns len(pt) and 0. It runs in
// time independent of the padding so that it cannot serve as a timing
// padding oracle. len(pt) must be a positive multiple of the block size.
func pkcs7Len(pt []byte) (int, int) {
	last := len(pt) - 1
	p := int(pt[last])
	good := subtle.ConstantTimeLessOrEq(1, p) & subtle.ConstantTimeLessOrEq(p, aes.BlockSize)
	for i := 0; i < aes.BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i+1, p)
		eq := subtle.ConstantTimeByteEq(pt[last-i], byte(p))
		good &= subtle.ConstantTimeSelect(inPad, eq, 1)
	}
	return subtle.ConstantTimeSelect(good, len(pt)-p, len(pt)), good
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// parseToken parses a token plaintext strictly. encoding/json alone would
// match keys case-insensitively, take the last of duplicate keys, replace
// invalid UTF-8 and read null as zero; each of those would let a CBC bit
// flip or a sloppy generator produce a token that means something other
// than its bytes say. Every field but payload is required, as every vendor
// generator writes them; payload may be absent or null, which some
// generators write when there is no payload.
func parseToken(pt []byte) (tokenJSON, bool) {
	var t tokenJSON
	if !utf8.Valid(pt) {
		return t, false
	}
	obj, ok := jsonObject(pt)
	if !ok {
		return t, false
	}
	ok = required(obj, "app_id", &t.AppID) &&
		required(obj, "user_id", &t.UserID) &&
		required(obj, "ctime", &t.CTime) &&
		required(obj, "expire", &t.Expire) &&
		required(obj, "nonce", &t.Nonce) &&
		optional(obj, "payload", &t.Payload)
	return t, ok
}

// jsonObject decodes a JSON object into its raw member values, matching
// keys exactly and refusing duplicate keys and anything after the object.
func jsonObject(data []byte) (map[string]json.RawMessage, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	obj := make(map[string]json.RawMessage, 6)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, ok := tok.(string)
		if !ok {
			return nil, false
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false
		}
		if _, dup := obj[key]; dup {
			return nil, false
		}
		obj[key] = raw
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false
	}
	return obj, true
}

// required decodes member key of obj into v; the member must exist and not
// be null, because encoding/json would silently leave v zero.
func required(obj map[string]json.RawMessage, key string, v any) bool {
	raw, ok := obj[key]
	return ok && !isNull(raw) && json.Unmarshal(raw, v) == nil
}

// optional decodes member key of obj into v if it exists and is not null.
func optional(obj map[string]json.RawMessage, key string, v any) bool {
	raw, ok := obj[key]
	return !ok || isNull(raw) || json.Unmarshal(raw, v) == nil
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }
