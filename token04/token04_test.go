package token04

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/onair-dev/onair/errcode"
)

const (
	testSecret  = "fa94dd0f974cf2e293728a526b028271" // the shape of a vendor ServerSecret
	otherSecret = "00000000000000000000000000000000"
	testApp     = uint32(1234567890)
	testUser    = "user-1"
	testTTL     = time.Hour
)

// t0 is the creation time of test tokens; tokens are checked at t0+1s.
var (
	t0    = time.Unix(1_700_000_000, 0)
	tNow  = t0.Add(time.Second)
	tExp  = t0.Add(testTTL)
	roomR = &Privilege{RoomID: "r1", Login: true, Publish: true, StreamIDs: []string{"s1", "s2"}}
)

func fixedNow() time.Time { return t0 }

// mint mints a token at t0 and fails the test on error.
func mint(tb testing.TB, mode Mode, p *Privilege) string {
	tb.Helper()
	tok, err := Mint(testApp, testUser, testSecret, testTTL, &Options{Mode: mode, Privilege: p, Now: fixedNow})
	if err != nil {
		tb.Fatalf("Mint: %v", err)
	}
	return tok
}

// sealJSON seals an arbitrary plaintext whose outer expiry is tExp.
func sealJSON(tb testing.TB, mode Mode, plaintext string) string {
	tb.Helper()
	tok, err := seal(mode, testSecret, []byte(plaintext), tExp.Unix(), rand.Reader)
	if err != nil {
		tb.Fatalf("seal: %v", err)
	}
	return tok
}

// plain is a valid plaintext for sealJSON with the given payload JSON
// value (a quoted string, null, or "" to leave payload out).
func plain(payload string) string {
	s := fmt.Sprintf(`{"app_id":%d,"user_id":%q,"ctime":%d,"expire":%d,"nonce":42`, testApp, testUser, t0.Unix(), tExp.Unix())
	if payload != "" {
		s += `,"payload":` + payload
	}
	return s + "}"
}

func decodeBlob(tb testing.TB, tok string) []byte {
	tb.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(tok, Version))
	if err != nil {
		tb.Fatalf("decoding %q: %v", tok, err)
	}
	return b
}

func encodeBlob(b []byte) string { return Version + base64.StdEncoding.EncodeToString(b) }

// wantCode fails unless err is an *errcode.Error with code want (nil for
// want == errcode.OK).
func wantCode(tb testing.TB, err error, want errcode.Code) {
	tb.Helper()
	if want == errcode.OK {
		if err != nil {
			tb.Fatalf("err = %v, want nil", err)
		}
		return
	}
	var e *errcode.Error
	if !errors.As(err, &e) {
		tb.Fatalf("err = %v (%T), want *errcode.Error with code %d", err, err, want)
	}
	if e.Code != want {
		tb.Fatalf("code = %d (%v), want %d", e.Code, e, want)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		mode Mode
		priv *Privilege
	}{
		{"GCM basic", GCM, nil},
		{"CBC basic", CBC, nil},
		{"GCM privilege", GCM, roomR},
		{"CBC privilege", CBC, roomR},
		{"GCM login only any room", GCM, &Privilege{Login: true}},
		{"CBC no streams", CBC, &Privilege{RoomID: "r", Login: true, Publish: true, StreamIDs: []string{}}},
		{"GCM unicode room", GCM, &Privilege{RoomID: "房间<&>\"", Login: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := mint(t, tt.mode, tt.priv)
			c, err := Verify(tok, testApp, testUser, testSecret, tNow)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.AppID != testApp || c.UserID != testUser || !c.CreateTime.Equal(t0) || !c.ExpireTime.Equal(tExp) || c.Mode != tt.mode {
				t.Errorf("claims = %+v", c)
			}
			if c.Nonce < 0 {
				t.Errorf("nonce = %d, want non-negative", c.Nonce)
			}
			if !reflect.DeepEqual(c.Privilege, tt.priv) {
				t.Errorf("privilege = %#v, want %#v", c.Privilege, tt.priv)
			}
			if tt.priv == nil && c.Payload != "" {
				t.Errorf("basic token payload = %q", c.Payload)
			}
			if tt.priv != nil {
				want, _ := tt.priv.Payload()
				if c.Payload != want {
					t.Errorf("payload = %q, want %q", c.Payload, want)
				}
			}
			// VerifyAnyUser accepts the same token without knowing the user.
			c2, err := VerifyAnyUser(tok, testApp, testSecret, tNow)
			if err != nil || c2.UserID != testUser {
				t.Errorf("VerifyAnyUser = %+v, %v", c2, err)
			}
		})
	}
}

// TestLayout checks the minted blob field by field against the format.
func TestLayout(t *testing.T) {
	for _, mode := range []Mode{GCM, CBC} {
		t.Run(mode.String(), func(t *testing.T) {
			tok := mint(t, mode, nil)
			if !strings.HasPrefix(tok, "04") {
				t.Fatalf("token %q lacks the 04 prefix", tok)
			}
			b := decodeBlob(t, tok)
			if got := int64(binary.BigEndian.Uint64(b)); got != tExp.Unix() {
				t.Errorf("outer expire = %d, want %d", got, tExp.Unix())
			}
			ivLen := int(binary.BigEndian.Uint16(b[8:]))
			n := int(binary.BigEndian.Uint16(b[10+ivLen:]))
			rest := b[12+ivLen+n:]
			switch mode {
			case GCM:
				if ivLen != 12 || !bytes.Equal(rest, []byte{1}) || n <= 16 {
					t.Errorf("GCM layout: ivLen %d, n %d, trailer %x", ivLen, n, rest)
				}
			case CBC:
				if ivLen != 16 || len(rest) != 0 || n%16 != 0 {
					t.Errorf("CBC layout: ivLen %d, n %d, trailer %x", ivLen, n, rest)
				}
			}
		})
	}
}

// vendorPlain is the plaintext in the field order of the vendor's
// JavaScript generator, which differs from Mint's; order must not matter.
type vendorPlain struct {
	AppID   uint32 `json:"app_id"`
	UserID  string `json:"user_id"`
	Nonce   int32  `json:"nonce"`
	CTime   int64  `json:"ctime"`
	Expire  int64  `json:"expire"`
	Payload string `json:"payload"`
}

// vendorIV makes an IV the way the vendor's generators do: 16 characters
// from [0-9a-z].
func vendorIV() []byte {
	const chars = "0123456789abcdefghijklmnopqrstuvwxyz"
	iv := make([]byte, 16)
	for i := range iv {
		iv[i] = chars[mrand.IntN(len(chars))]
	}
	return iv
}

// TestVendorCBC builds CBC tokens exactly as the vendor's public
// generators do, without Mint or seal, and checks Verify accepts them.
func TestVendorCBC(t *testing.T) {
	for _, payload := range []string{"", `{"room_id":"demo","privilege":{"1":1,"2":0},"stream_id_list":null}`} {
		t.Run(fmt.Sprintf("payload=%q", payload), func(t *testing.T) {
			info := vendorPlain{AppID: testApp, UserID: testUser, Nonce: -12345, CTime: t0.Unix(), Expire: t0.Unix() + 7200, Payload: payload}
			pt, err := json.Marshal(info)
			if err != nil {
				t.Fatal(err)
			}
			pad := aes.BlockSize - len(pt)%aes.BlockSize
			pt = append(pt, bytes.Repeat([]byte{byte(pad)}, pad)...)
			block, err := aes.NewCipher([]byte(testSecret))
			if err != nil {
				t.Fatal(err)
			}
			iv := vendorIV()
			ct := make([]byte, len(pt))
			cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, pt)

			var buf bytes.Buffer
			must := func(err error) {
				if err != nil {
					t.Fatal(err)
				}
			}
			must(binary.Write(&buf, binary.BigEndian, info.Expire))
			must(binary.Write(&buf, binary.BigEndian, uint16(len(iv))))
			buf.Write(iv)
			must(binary.Write(&buf, binary.BigEndian, uint16(len(ct))))
			buf.Write(ct)
			tok := "04" + base64.StdEncoding.EncodeToString(buf.Bytes())

			c, err := Verify(tok, testApp, testUser, testSecret, tNow)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := &Claims{
				AppID: testApp, UserID: testUser, CreateTime: t0, ExpireTime: t0.Add(2 * time.Hour),
				Nonce: -12345, Payload: payload, Mode: CBC,
			}
			if payload != "" {
				want.Privilege = &Privilege{RoomID: "demo", Login: true, Publish: false}
			}
			if !reflect.DeepEqual(c, want) {
				t.Errorf("claims = %+v\nwant     %+v", c, want)
			}
		})
	}
}

// TestVendorGCM builds a GCM token as the vendor's newer generators do.
func TestVendorGCM(t *testing.T) {
	pt, _ := json.Marshal(vendorPlain{AppID: testApp, UserID: testUser, Nonce: 7, CTime: t0.Unix(), Expire: tExp.Unix()})
	block, _ := aes.NewCipher([]byte(testSecret))
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	rand.Read(nonce)
	ct := aead.Seal(nil, nonce, pt, nil)
	var b []byte
	b = binary.BigEndian.AppendUint64(b, uint64(tExp.Unix()))
	b = binary.BigEndian.AppendUint16(b, 12)
	b = append(b, nonce...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ct)))
	b = append(b, ct...)
	b = append(b, 1)
	c, err := Verify(encodeBlob(b), testApp, testUser, testSecret, tNow)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.Mode != GCM || c.Nonce != 7 || c.Privilege != nil {
		t.Errorf("claims = %+v", c)
	}
}

// cbcRaw encrypts an already padded (or deliberately mis-padded) plaintext
// into a CBC token.
func cbcRaw(tb testing.TB, padded []byte) string {
	tb.Helper()
	block, _ := aes.NewCipher([]byte(testSecret))
	iv := make([]byte, 16)
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
	var b []byte
	b = binary.BigEndian.AppendUint64(b, uint64(tExp.Unix()))
	b = binary.BigEndian.AppendUint16(b, 16)
	b = append(b, iv...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ct)))
	b = append(b, ct...)
	return encodeBlob(b)
}

// editBlob decodes tok, applies f to the blob and re-encodes it.
func editBlob(tb testing.TB, tok string, f func([]byte) []byte) string {
	tb.Helper()
	return encodeBlob(f(decodeBlob(tb, tok)))
}

func TestVerifyErrors(t *testing.T) {
	// Padded: the unpadded and non-canonical cases edit the padding.
	gcm := padded(t)
	cbc := mint(t, CBC, nil)
	pad := func(s string) []byte {
		p := aes.BlockSize - len(s)%aes.BlockSize
		return append([]byte(s), bytes.Repeat([]byte{byte(p)}, p)...)
	}
	// A valid CBC plaintext whose last byte claims 3 bytes of padding but
	// whose padding bytes disagree.
	badPad := pad(plain(`""`))
	badPad[len(badPad)-2] ^= 1

	tests := []struct {
		name   string
		token  string
		appID  uint32
		user   string
		secret string
		now    time.Time
		want   errcode.Code
	}{
		{name: "GCM ok", token: gcm, want: errcode.OK},
		{name: "CBC ok", token: cbc, want: errcode.OK},
		{name: "empty", token: "", want: errcode.NoToken},
		{name: "version 03", token: "03" + gcm[2:], want: errcode.TokenWrongVersion},
		{name: "one char", token: "0", want: errcode.TokenWrongVersion},
		{name: "no version", token: gcm[2:], want: errcode.TokenWrongVersion},
		{name: "secret too short", token: gcm, secret: testSecret[:31], want: errcode.TokenInternal},
		{name: "secret too long", token: gcm, secret: testSecret + "x", want: errcode.TokenInternal},
		{name: "GCM wrong app", token: gcm, appID: testApp + 1, want: errcode.TokenAppIDMismatch},
		{name: "CBC wrong app", token: cbc, appID: 1, want: errcode.TokenAppIDMismatch},
		{name: "GCM wrong user", token: gcm, user: "user-2", want: errcode.TokenUserIDMismatch},
		{name: "CBC wrong user", token: cbc, user: "User-1", want: errcode.TokenUserIDMismatch},
		{name: "GCM expired at expiry", token: gcm, now: tExp, want: errcode.TokenExpired},
		{name: "CBC expired after expiry", token: cbc, now: tExp.Add(time.Minute), want: errcode.TokenExpired},
		{name: "GCM valid just before expiry", token: gcm, now: tExp.Add(-time.Nanosecond), want: errcode.OK},
		{name: "GCM wrong secret", token: gcm, secret: otherSecret, want: errcode.LoginAuthFailed},
		{name: "CBC wrong secret", token: cbc, secret: otherSecret, want: errcode.LoginAuthFailed},
		{name: "bad base64", token: "04!!!!", want: errcode.LoginAuthFailed},
		{name: "only version", token: "04", want: errcode.LoginAuthFailed},
		{name: "unpadded base64", token: strings.TrimRight(gcm, "="), want: errcode.LoginAuthFailed},
		{name: "URL base64", token: Version + base64.URLEncoding.EncodeToString(decodeBlob(t, gcm)), want: errcode.LoginAuthFailed},
		{name: "newline in base64", token: gcm[:10] + "\n" + gcm[10:], want: errcode.LoginAuthFailed},
		{name: "CR in base64", token: gcm[:10] + "\r" + gcm[10:], want: errcode.LoginAuthFailed},
		{name: "space in base64", token: gcm[:10] + " " + gcm[10:], want: errcode.LoginAuthFailed},
		{name: "non-canonical trailing bits", token: nonCanonical(t, gcm), want: errcode.LoginAuthFailed},
		{name: "oversized", token: "04" + strings.Repeat("A", maxEncodedLen+4), want: errcode.LoginAuthFailed},
		{name: "GCM without mode byte", token: editBlob(t, gcm, func(b []byte) []byte { return b[:len(b)-1] }), want: errcode.LoginAuthFailed},
		{name: "GCM mode byte 0", token: editBlob(t, gcm, func(b []byte) []byte { b[len(b)-1] = 0; return b }), want: errcode.LoginAuthFailed},
		{name: "GCM mode byte 2", token: editBlob(t, gcm, func(b []byte) []byte { b[len(b)-1] = 2; return b }), want: errcode.LoginAuthFailed},
		{name: "GCM two trailing bytes", token: editBlob(t, gcm, func(b []byte) []byte { return append(b, 1) }), want: errcode.LoginAuthFailed},
		{name: "CBC with mode byte 0", token: editBlob(t, cbc, func(b []byte) []byte { return append(b, 0) }), want: errcode.LoginAuthFailed},
		{name: "CBC with mode byte 1", token: editBlob(t, cbc, func(b []byte) []byte { return append(b, 1) }), want: errcode.LoginAuthFailed},
		{name: "CBC short ciphertext", token: editBlob(t, cbc, func(b []byte) []byte {
			n := binary.BigEndian.Uint16(b[26:])
			binary.BigEndian.PutUint16(b[26:], n-1)
			return b[:len(b)-1]
		}), want: errcode.LoginAuthFailed},
		{name: "CBC empty ciphertext", token: editBlob(t, cbc, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[26:], 0)
			return b[:28]
		}), want: errcode.LoginAuthFailed},
		{name: "GCM tag only", token: editBlob(t, gcm, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[22:], 16)
			return append(b[:24+16], 1)
		}), want: errcode.LoginAuthFailed},
		{name: "IV length 0xFFFF", token: editBlob(t, cbc, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[8:], 0xFFFF)
			return b
		}), want: errcode.LoginAuthFailed},
		{name: "ciphertext length 0xFFFF", token: editBlob(t, gcm, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[22:], 0xFFFF)
			return b
		}), want: errcode.LoginAuthFailed},
		{name: "GCM outer expire edited", token: editBlob(t, gcm, func(b []byte) []byte {
			binary.BigEndian.PutUint64(b, uint64(tExp.Unix()+3600))
			return b
		}), now: tExp.Add(time.Minute), want: errcode.LoginAuthFailed},
		{name: "CBC outer expire edited", token: editBlob(t, cbc, func(b []byte) []byte {
			binary.BigEndian.PutUint64(b, uint64(tExp.Unix()+3600))
			return b
		}), now: tExp.Add(time.Minute), want: errcode.LoginAuthFailed},
		{name: "CBC bad padding", token: cbcRaw(t, badPad), want: errcode.LoginAuthFailed},
		{name: "CBC padding 0", token: cbcRaw(t, append(pad(plain(`""`)), bytes.Repeat([]byte{0}, 16)...)), want: errcode.LoginAuthFailed},
		{name: "CBC padding 17", token: cbcRaw(t, append(pad(plain(`""`)), bytes.Repeat([]byte{17}, 16)...)), want: errcode.LoginAuthFailed},
		{name: "CBC full padding block ok", token: cbcRaw(t, append([]byte(plain(`""`)+strings.Repeat(" ", 16-len(plain(`""`))%16)), bytes.Repeat([]byte{16}, 16)...)), want: errcode.OK},
		{name: "GCM plaintext not JSON", token: sealJSON(t, GCM, "hello, world"), want: errcode.TokenPayloadNotJSON},
		{name: "GCM plaintext JSON array", token: sealJSON(t, GCM, "[1,2,3]"), want: errcode.TokenPayloadNotJSON},
		// The padding oracle defence: for CBC, well-padded garbage is
		// indistinguishable from badly padded garbage.
		{name: "CBC plaintext not JSON", token: sealJSON(t, CBC, "hello, world"), want: errcode.LoginAuthFailed},
		{name: "GCM payload not JSON", token: sealJSON(t, GCM, plain(`"not json"`)), want: errcode.TokenPayloadNotJSON},
		{name: "CBC payload not JSON", token: sealJSON(t, CBC, plain(`"not json"`)), want: errcode.TokenPayloadNotJSON},
		{name: "GCM payload bad privilege", token: sealJSON(t, GCM, plain(`"{\"privilege\":{\"1\":2}}"`)), want: errcode.TokenPayloadNotJSON},
		{name: "GCM payload checked before app", token: sealJSON(t, GCM, plain(`"nope"`)), appID: 1, want: errcode.TokenPayloadNotJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.appID == 0 {
				tt.appID = testApp
			}
			if tt.user == "" {
				tt.user = testUser
			}
			if tt.secret == "" {
				tt.secret = testSecret
			}
			if tt.now.IsZero() {
				tt.now = tNow
			}
			c, err := Verify(tt.token, tt.appID, tt.user, tt.secret, tt.now)
			wantCode(t, err, tt.want)
			if (err == nil) != (c != nil) {
				t.Errorf("claims %v with error %v", c, err)
			}
			// No oracle: every 1002033 is the same error with the same text.
			if tt.want == errcode.LoginAuthFailed && err.Error() != errBadToken.Error() {
				t.Errorf("message %q differs from %q", err, errBadToken)
			}
		})
	}
}

// nonCanonical re-spells tok with non-zero unused bits in its last base64
// character, which a lenient decoder maps to the same blob.
func nonCanonical(tb testing.TB, tok string) string {
	tb.Helper()
	s := strings.TrimRight(tok, "=")
	pads := len(tok) - len(s)
	if pads == 0 {
		tb.Fatalf("token %q has no padding; pick another", tok)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	last := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[last|1]) + strings.Repeat("=", pads)
}

// padded mints GCM tokens until one ends in base64 padding, which
// nonCanonical needs: a token's length varies with its random nonce.
func padded(tb testing.TB) string {
	tb.Helper()
	for range 100 {
		if tok := mint(tb, GCM, nil); strings.HasSuffix(tok, "=") {
			return tok
		}
	}
	tb.Fatal("100 tokens in a row without base64 padding")
	return ""
}

// TestNonCanonicalDecodesLeniently makes sure the non-canonical case above
// really is the same blob to a lenient decoder, so the test means something.
func TestNonCanonicalDecodesLeniently(t *testing.T) {
	tok := padded(t)
	a, _ := base64.StdEncoding.DecodeString(tok[2:])
	b, err := base64.StdEncoding.DecodeString(nonCanonical(t, tok)[2:])
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("lenient decode differs: %v", err)
	}
}

// TestStrictJSON checks plaintexts that encoding/json alone would accept
// with a different meaning.
func TestStrictJSON(t *testing.T) {
	head := fmt.Sprintf(`"user_id":%q,"ctime":%d,"expire":%d,"nonce":1`, testUser, t0.Unix(), tExp.Unix())
	app := fmt.Sprintf(`"app_id":%d`, testApp)
	tests := []struct {
		name string
		pt   string
		want errcode.Code
	}{
		{"valid", plain(`""`), errcode.OK},
		{"reordered", `{` + head + `,` + app + `,"payload":""}`, errcode.OK},
		{"payload absent", plain(""), errcode.OK},
		{"payload null", plain("null"), errcode.OK},
		{"unknown member ignored", `{` + app + `,` + head + `,"extra":{"a":[1]}}`, errcode.OK},
		{"surrounding whitespace", " \n" + plain(`""`) + "\n", errcode.OK},
		{"key case differs", `{"App_id":` + fmt.Sprint(testApp) + `,` + head + `}`, errcode.TokenPayloadNotJSON},
		{"duplicate key", `{` + app + `,` + app + `,` + head + `}`, errcode.TokenPayloadNotJSON},
		{"trailing garbage", plain(`""`) + "x", errcode.TokenPayloadNotJSON},
		{"two objects", plain(`""`) + "{}", errcode.TokenPayloadNotJSON},
		{"invalid UTF-8", strings.Replace(plain(`""`), testUser, "user-\xff", 1), errcode.TokenPayloadNotJSON},
		{"app_id null", `{"app_id":null,` + head + `}`, errcode.TokenPayloadNotJSON},
		{"app_id missing", `{` + head + `}`, errcode.TokenPayloadNotJSON},
		{"app_id string", `{"app_id":"` + fmt.Sprint(testApp) + `",` + head + `}`, errcode.TokenPayloadNotJSON},
		{"app_id negative", `{"app_id":-1,` + head + `}`, errcode.TokenPayloadNotJSON},
		{"app_id over uint32", `{"app_id":4294967296,` + head + `}`, errcode.TokenPayloadNotJSON},
		{"app_id float", `{"app_id":1234567890.0,` + head + `}`, errcode.TokenPayloadNotJSON},
		{"nonce missing", strings.Replace(plain(`""`), `,"nonce":42`, "", 1), errcode.TokenPayloadNotJSON},
		{"nonce over int32", strings.Replace(plain(`""`), `"nonce":42`, `"nonce":2147483648`, 1), errcode.TokenPayloadNotJSON},
		{"user_id number", strings.Replace(plain(`""`), fmt.Sprintf("%q", testUser), "7", 1), errcode.TokenPayloadNotJSON},
		{"payload number", plain("1"), errcode.TokenPayloadNotJSON},
		{"trailing comma", strings.TrimSuffix(plain(`""`), "}") + ",}", errcode.TokenPayloadNotJSON},
		{"empty", "", errcode.TokenPayloadNotJSON},
		{"only whitespace", "   ", errcode.TokenPayloadNotJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(sealJSON(t, GCM, tt.pt), testApp, testUser, testSecret, tNow)
			wantCode(t, err, tt.want)
			// Under CBC the same plaintexts are either accepted or, having
			// no authentication, reported as 1002033.
			cbcWant := tt.want
			if cbcWant == errcode.TokenPayloadNotJSON {
				cbcWant = errcode.LoginAuthFailed
			}
			_, err = Verify(sealJSON(t, CBC, tt.pt), testApp, testUser, testSecret, tNow)
			wantCode(t, err, cbcWant)
		})
	}
}

func TestPrivilegePayload(t *testing.T) {
	tests := []struct {
		p    Privilege
		want string
	}{
		{Privilege{RoomID: "demo", Login: true}, `{"room_id":"demo","privilege":{"1":1,"2":0},"stream_id_list":null}`},
		{Privilege{Login: true, Publish: true}, `{"room_id":"","privilege":{"1":1,"2":1},"stream_id_list":null}`},
		{Privilege{RoomID: "r", Publish: true, StreamIDs: []string{"a", "b"}}, `{"room_id":"r","privilege":{"1":0,"2":1},"stream_id_list":["a","b"]}`},
		{Privilege{RoomID: "r", StreamIDs: []string{}}, `{"room_id":"r","privilege":{"1":0,"2":0},"stream_id_list":[]}`},
	}
	for _, tt := range tests {
		got, err := tt.p.Payload()
		if err != nil || got != tt.want {
			t.Errorf("%+v.Payload() = %s, %v; want %s", tt.p, got, err, tt.want)
		}
		back, ok := parsePayload(got)
		if !ok || !reflect.DeepEqual(*back, tt.p) {
			t.Errorf("parsePayload(%s) = %#v, %v; want %#v", got, back, ok, tt.p)
		}
	}
}

func TestParsePayload(t *testing.T) {
	all := &Privilege{Login: true, Publish: true}
	tests := []struct {
		payload string
		want    *Privilege // nil: refused
	}{
		{`{"room_id":"demo","privilege":{"1":1,"2":0},"stream_id_list":null}`, &Privilege{RoomID: "demo", Login: true}},
		{`{}`, all},
		{`{"room_id":"r"}`, &Privilege{RoomID: "r", Login: true, Publish: true}},
		{`{"room_id":null}`, all},
		{`{"privilege":{"1":0}}`, &Privilege{Publish: true}},
		{`{"privilege":{"2":0}}`, &Privilege{Login: true}},
		{`{"privilege":{}}`, all},
		{`{"privilege":null}`, all},
		{`{"privilege":{"1":1,"2":1,"3":0}}`, all},
		{`{"stream_id_list":["a","b"]}`, &Privilege{Login: true, Publish: true, StreamIDs: []string{"a", "b"}}},
		{`{"stream_id_list":[]}`, &Privilege{Login: true, Publish: true, StreamIDs: []string{}}},
		{`{"stream_id_list":null}`, all},
		{`{"other":"ignored"}`, all},
		{`not json`, nil},
		{`null`, nil},
		{`[]`, nil},
		{`"x"`, nil},
		{` `, nil},
		{`{"room_id":1}`, nil},
		{`{"room_id":"a","room_id":"b"}`, nil},
		{`{"privilege":{"1":2}}`, nil},
		{`{"privilege":{"1":-1}}`, nil},
		{`{"privilege":{"1":"1"}}`, nil},
		{`{"privilege":{"1":true}}`, nil},
		{`{"privilege":{"1":null}}`, nil},
		{`{"privilege":{"1":1.0}}`, nil},
		{`{"privilege":{"1":1,"1":0}}`, nil},
		{`{"privilege":[1,1]}`, nil},
		{`{"stream_id_list":"a"}`, nil},
		{`{"stream_id_list":[1]}`, nil},
		{`{} {}`, nil},
	}
	for _, tt := range tests {
		got, ok := parsePayload(tt.payload)
		if tt.want == nil {
			if ok {
				t.Errorf("parsePayload(%s) = %#v, want refusal", tt.payload, got)
			}
			continue
		}
		if !ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parsePayload(%s) = %#v, %v; want %#v", tt.payload, got, ok, tt.want)
		}
	}
}

func TestAllows(t *testing.T) {
	claims := func(p *Privilege) *Claims { return &Claims{Privilege: p} }
	tests := []struct {
		name           string
		c              *Claims
		room, stream   string
		login, publish bool
	}{
		{"basic", claims(nil), "any", "any", true, true},
		{"any room", claims(&Privilege{Login: true, Publish: true}), "r9", "s9", true, true},
		{"room match", claims(&Privilege{RoomID: "r1", Login: true, Publish: true}), "r1", "s", true, true},
		{"room mismatch", claims(&Privilege{RoomID: "r1", Login: true, Publish: true}), "r2", "s", false, false},
		{"room is case sensitive", claims(&Privilege{RoomID: "r1", Login: true, Publish: true}), "R1", "s", false, false},
		{"login denied", claims(&Privilege{RoomID: "r1", Publish: true}), "r1", "s", false, false},
		{"publish denied", claims(&Privilege{RoomID: "r1", Login: true}), "r1", "s", true, false},
		{"stream listed", claims(roomR), "r1", "s2", true, true},
		{"stream not listed", claims(roomR), "r1", "s3", true, false},
		{"stream listed wrong room", claims(roomR), "r2", "s1", false, false},
		{"no streams allowed", claims(&Privilege{Login: true, Publish: true, StreamIDs: []string{}}), "r", "s", true, false},
		{"nil claims", nil, "r", "s", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.AllowsLogin(tt.room); got != tt.login {
				t.Errorf("AllowsLogin(%q) = %v, want %v", tt.room, got, tt.login)
			}
			if got := tt.c.AllowsPublish(tt.room, tt.stream); got != tt.publish {
				t.Errorf("AllowsPublish(%q, %q) = %v, want %v", tt.room, tt.stream, got, tt.publish)
			}
			wantLogin, wantPublish := errcode.LoginAuthFailed, errcode.PublishAuthError
			if tt.login {
				wantLogin = errcode.OK
			}
			if tt.publish {
				wantPublish = errcode.OK
			}
			wantCode(t, tt.c.CheckLogin(tt.room), wantLogin)
			wantCode(t, tt.c.CheckPublish(tt.room, tt.stream), wantPublish)
		})
	}
}

// TestAllowsThroughToken checks privileges survive a real token in each
// layout.
func TestAllowsThroughToken(t *testing.T) {
	for _, mode := range []Mode{GCM, CBC} {
		c, err := Verify(mint(t, mode, &Privilege{RoomID: "r1", Login: true, Publish: true, StreamIDs: []string{"s1"}}), testApp, testUser, testSecret, tNow)
		if err != nil {
			t.Fatal(err)
		}
		if !c.AllowsLogin("r1") || c.AllowsLogin("r2") || !c.AllowsPublish("r1", "s1") || c.AllowsPublish("r1", "s2") {
			t.Errorf("%v: privileges not enforced: %+v", mode, c.Privilege)
		}
	}
}

// TestTamper flips bits in every byte of the decoded blob: nothing
// verifies and nothing panics. GCM rejects every edit as 1002033; CBC,
// being malleable, may instead parse to a different app_id (1002076).
func TestTamper(t *testing.T) {
	for _, mode := range []Mode{GCM, CBC} {
		for _, p := range []*Privilege{nil, roomR} {
			tok := mint(t, mode, p)
			blob := decodeBlob(t, tok)
			for i := range blob {
				// 0x20 turns "app_id" into "App_id", which encoding/json
				// would match case-insensitively.
				for _, mask := range []byte{0x01, 0x02, 0x20, 0x80, 0xFF} {
					b := bytes.Clone(blob)
					b[i] ^= mask
					c, err := Verify(encodeBlob(b), testApp, testUser, testSecret, tNow)
					if err == nil {
						t.Fatalf("%v: flipping %#x at byte %d verified: %+v", mode, mask, i, c)
					}
					code := errcode.Of(err)
					if code == errcode.LoginAuthFailed && err.Error() != errBadToken.Error() {
						t.Fatalf("message %q differs", err)
					}
					if mode == GCM && code != errcode.LoginAuthFailed || mode == CBC && code != errcode.LoginAuthFailed && code != errcode.TokenAppIDMismatch {
						t.Fatalf("%v: flipping %#x at byte %d: %v", mode, mask, i, err)
					}
				}
			}
		}
	}
}

// TestTruncated checks every prefix and a one-byte extension of the blob,
// and every prefix of the token string.
func TestTruncated(t *testing.T) {
	for _, mode := range []Mode{GCM, CBC} {
		tok := mint(t, mode, roomR)
		blob := decodeBlob(t, tok)
		for n := range len(blob) {
			_, err := Verify(encodeBlob(blob[:n]), testApp, testUser, testSecret, tNow)
			wantCode(t, err, errcode.LoginAuthFailed)
		}
		_, err := Verify(encodeBlob(append(bytes.Clone(blob), 0)), testApp, testUser, testSecret, tNow)
		wantCode(t, err, errcode.LoginAuthFailed)
		for n := range len(tok) {
			if _, err := Verify(tok[:n], testApp, testUser, testSecret, tNow); err == nil {
				t.Fatalf("%v: prefix of %d chars verified", mode, n)
			}
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestMintErrors(t *testing.T) {
	tests := []struct {
		name   string
		app    uint32
		user   string
		secret string
		ttl    time.Duration
		opts   *Options
		want   errcode.Code
	}{
		{"ok", testApp, testUser, testSecret, testTTL, nil, errcode.OK},
		{"app 0", 0, testUser, testSecret, testTTL, nil, errcode.InvalidParameter},
		{"empty user", testApp, "", testSecret, testTTL, nil, errcode.InvalidParameter},
		{"short secret", testApp, testUser, testSecret[:16], testTTL, nil, errcode.InvalidParameter},
		{"long secret", testApp, testUser, testSecret + "0", testTTL, nil, errcode.InvalidParameter},
		{"ttl under 1s", testApp, testUser, testSecret, 999 * time.Millisecond, nil, errcode.InvalidParameter},
		{"ttl negative", testApp, testUser, testSecret, -time.Hour, nil, errcode.InvalidParameter},
		{"bad mode", testApp, testUser, testSecret, testTTL, &Options{Mode: 7}, errcode.InvalidParameter},
		{"no randomness", testApp, testUser, testSecret, testTTL, &Options{Rand: failingReader{}}, errcode.TokenInternal},
		{"GCM payload too long", testApp, testUser, testSecret, testTTL, &Options{Privilege: &Privilege{RoomID: strings.Repeat("r", 70000)}}, errcode.InvalidParameter},
		{"CBC payload too long", testApp, testUser, testSecret, testTTL, &Options{Mode: CBC, Privilege: &Privilege{RoomID: strings.Repeat("r", 70000)}}, errcode.InvalidParameter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := Mint(tt.app, tt.user, tt.secret, tt.ttl, tt.opts)
			wantCode(t, err, tt.want)
			if (err == nil) != (tok != "") {
				t.Errorf("token %q with error %v", tok, err)
			}
		})
	}
}

// TestLongestPayload mints the largest token each layout can describe and
// verifies it, so the u16 bounds are exact.
func TestLongestPayload(t *testing.T) {
	for _, tc := range []struct {
		mode Mode
		max  int // longest plaintext the u16 length can describe
	}{{GCM, 0xFFFF - 16}, {CBC, 0xFFF0 - 1}} {
		// A zero Rand fixes the nonce, so the plaintext length is known.
		opts := &Options{Mode: tc.mode, Privilege: &Privilege{Login: true, Publish: true}, Now: fixedNow, Rand: zeroReader{}}
		tok, err := Mint(testApp, testUser, testSecret, testTTL, opts)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Verify(tok, testApp, testUser, testSecret, tNow)
		if err != nil {
			t.Fatal(err)
		}
		pt, _ := json.Marshal(tokenJSON{AppID: testApp, UserID: testUser, CTime: c.CreateTime.Unix(), Expire: c.ExpireTime.Unix(), Nonce: c.Nonce, Payload: c.Payload})
		opts.Privilege.RoomID = strings.Repeat("r", tc.max-len(pt))
		tok, err = Mint(testApp, testUser, testSecret, testTTL, opts)
		if err != nil {
			t.Fatalf("%v: Mint at the limit: %v", tc.mode, err)
		}
		if _, err := Verify(tok, testApp, testUser, testSecret, tNow); err != nil {
			t.Fatalf("%v: Verify at the limit: %v", tc.mode, err)
		}
		if n := len(tok) - len(Version); n > maxEncodedLen {
			t.Fatalf("%v: token of %d base64 chars exceeds maxEncodedLen %d", tc.mode, n, maxEncodedLen)
		}
		opts.Privilege.RoomID += "r"
		_, err = Mint(testApp, testUser, testSecret, testTTL, opts)
		wantCode(t, err, errcode.InvalidParameter)
	}
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }

func TestMintTimes(t *testing.T) {
	tok, err := Mint(testApp, testUser, testSecret, 90*time.Second+900*time.Millisecond, &Options{Now: func() time.Time { return t0.Add(700 * time.Millisecond) }})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(tok, testApp, testUser, testSecret, tNow)
	if err != nil {
		t.Fatal(err)
	}
	// ctime is truncated to the second and ttl to whole seconds.
	if !c.CreateTime.Equal(t0) || !c.ExpireTime.Equal(t0.Add(90*time.Second)) {
		t.Errorf("ctime %v expire %v", c.CreateTime, c.ExpireTime)
	}
}

// TestZeroNow checks a zero now means the current time, not the year 1.
func TestZeroNow(t *testing.T) {
	fresh, err := Mint(testApp, testUser, testSecret, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(fresh, testApp, testUser, testSecret, time.Time{}); err != nil {
		t.Errorf("fresh token: %v", err)
	}
	_, err = Verify(mint(t, GCM, nil), testApp, testUser, testSecret, time.Time{})
	wantCode(t, err, errcode.TokenExpired)
}

func TestPKCS7Len(t *testing.T) {
	block := func(tail ...byte) []byte {
		b := bytes.Repeat([]byte{'x'}, 32-len(tail))
		return append(b, tail...)
	}
	tests := []struct {
		name string
		b    []byte
		n    int
		ok   int
	}{
		{"1", block(1), 31, 1},
		{"2", block(2, 2), 30, 1},
		{"16", append(bytes.Repeat([]byte{'x'}, 16), bytes.Repeat([]byte{16}, 16)...), 16, 1},
		{"0", block(0), 32, 0},
		{"17", block(bytes.Repeat([]byte{17}, 17)...), 32, 0},
		{"255", block(255), 32, 0},
		{"mismatch", block(3, 2), 32, 0},
		{"claims more than present", block(1, 3, 3), 32, 0},
	}
	for _, tt := range tests {
		if n, ok := pkcs7Len(tt.b); n != tt.n || ok != tt.ok {
			t.Errorf("%s: pkcs7Len = %d, %d; want %d, %d", tt.name, n, ok, tt.n, tt.ok)
		}
	}
}

func TestModeString(t *testing.T) {
	if GCM.String() != "GCM" || CBC.String() != "CBC" || Mode(9).String() != "Mode(9)" {
		t.Error("Mode.String")
	}
}

// FuzzVerify feeds Verify arbitrary strings. It must never panic, must
// return only *errcode.Error with a documented code, and must accept
// nothing but the seeds that were minted with the secret.
func FuzzVerify(f *testing.F) {
	// The fuzzing engine runs this function in several processes, so the
	// seeds must come out the same in each: randomness is a fixed stream.
	valid := map[string]bool{}
	seed := [32]byte{'t', 'o', 'k', 'e', 'n', '0', '4'}
	for _, mode := range []Mode{GCM, CBC} {
		for _, p := range []*Privilege{nil, roomR, {RoomID: "r", Login: true}} {
			opts := &Options{Mode: mode, Privilege: p, Now: fixedNow, Rand: mrand.NewChaCha8(seed)}
			seed[31]++
			tok, err := Mint(testApp, testUser, testSecret, testTTL, opts)
			if err != nil {
				f.Fatal(err)
			}
			valid[tok] = true
			f.Add(tok)
		}
	}
	for _, s := range []string{
		"", "0", "04", "03AAAA", "04AAAA", "04====", "04AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"04" + base64.StdEncoding.EncodeToString(make([]byte, 40)),
		"04" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xFF}, 64)),
	} {
		f.Add(s)
	}
	// Authentic tokens that must still be refused: a plaintext that is not
	// JSON, and a payload that is not privilege JSON.
	for _, pt := range []string{"not json", plain(`"{\"privilege\":{\"1\":9}}"`)} {
		for _, mode := range []Mode{GCM, CBC} {
			s, err := seal(mode, testSecret, []byte(pt), tExp.Unix(), mrand.NewChaCha8(seed))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(s)
		}
	}
	allowed := map[errcode.Code]bool{
		errcode.NoToken: true, errcode.TokenWrongVersion: true, errcode.LoginAuthFailed: true,
		errcode.TokenPayloadNotJSON: true, errcode.TokenAppIDMismatch: true,
		errcode.TokenUserIDMismatch: true, errcode.TokenExpired: true,
	}
	f.Fuzz(func(t *testing.T, tok string) {
		for _, anyUser := range []bool{false, true} {
			var (
				c   *Claims
				err error
			)
			if anyUser {
				c, err = VerifyAnyUser(tok, testApp, testSecret, tNow)
			} else {
				c, err = Verify(tok, testApp, testUser, testSecret, tNow)
			}
			if err == nil {
				if !valid[tok] {
					t.Fatalf("verified a token that was never minted: %q -> %+v", tok, c)
				}
				continue
			}
			var e *errcode.Error
			if !errors.As(err, &e) || !allowed[e.Code] {
				t.Fatalf("unexpected error %v (%T)", err, err)
			}
			if e.Code == errcode.LoginAuthFailed && e != errBadToken {
				t.Fatalf("1002033 with a different error value: %v", e)
			}
		}
	})
}

// FuzzPlaintext feeds the plaintext and payload parsers directly, where
// FuzzVerify's mutations rarely reach past the cipher. Whatever the strict
// parser accepts, encoding/json must read the same way, so strictness only
// ever removes inputs and never changes a meaning.
func FuzzPlaintext(f *testing.F) {
	f.Add([]byte(plain(`""`)))
	f.Add([]byte(plain(`"{\"room_id\":\"r\",\"privilege\":{\"1\":1,\"2\":0},\"stream_id_list\":[\"s\"]}"`)))
	f.Add([]byte(plain("null")))
	f.Add([]byte(`{"App_id":1,"app_id":2}`))
	f.Add([]byte(`{"room_id":"demo","privilege":{"1":1,"2":0},"stream_id_list":null}`))
	f.Fuzz(func(t *testing.T, pt []byte) {
		if tok, ok := parseToken(pt); ok {
			var std tokenJSON
			if err := json.Unmarshal(pt, &std); err != nil || std != tok {
				t.Fatalf("strict %+v, encoding/json %+v (%v)", tok, std, err)
			}
		}
		if p, ok := parsePayload(string(pt)); ok {
			var std privilegeJSON
			std.Privilege.Login, std.Privilege.Publish = granted, granted
			if err := json.Unmarshal(pt, &std); err != nil {
				t.Fatalf("strict accepted %q, encoding/json: %v", pt, err)
			}
			if std.RoomID != p.RoomID || (std.Privilege.Login == granted) != p.Login || (std.Privilege.Publish == granted) != p.Publish {
				t.Fatalf("strict %+v, encoding/json %+v", p, std)
			}
			if !reflect.DeepEqual(std.StreamIDList, p.StreamIDs) {
				t.Fatalf("streams: strict %#v, encoding/json %#v", p.StreamIDs, std.StreamIDList)
			}
		}
	})
}

func benchmarkVerify(b *testing.B, mode Mode) {
	tok := mint(b, mode, roomR)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(tok, testApp, testUser, testSecret, tNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyGCM measures verifying a GCM token with a privilege
// payload.
func BenchmarkVerifyGCM(b *testing.B) { benchmarkVerify(b, GCM) }

// BenchmarkVerifyCBC measures verifying a CBC token with a privilege
// payload.
func BenchmarkVerifyCBC(b *testing.B) { benchmarkVerify(b, CBC) }

// BenchmarkMintGCM measures minting a GCM token with a privilege payload.
func BenchmarkMintGCM(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		mint(b, GCM, roomR)
	}
}
