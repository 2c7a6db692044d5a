package callback

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strings"
	"time"
)

// Sign is a callback's signature, the vendor's scheme: hex sha1 of the
// callback secret, the timestamp and the nonce, sorted as strings and
// concatenated.
func Sign(secret, timestamp, nonce string) string {
	parts := []string{secret, timestamp, nonce}
	slices.Sort(parts)
	sum := sha1.Sum([]byte(strings.Join(parts, "")))
	return hex.EncodeToString(sum[:])
}

// Verify is what a business server does with a callback's signature fields.
func Verify(secret, timestamp, nonce, signature string) bool {
	return subtle.ConstantTimeCompare([]byte(Sign(secret, timestamp, nonce)), []byte(signature)) == 1
}

// DefaultRetryBase makes the vendor's schedule: retries 2, 4, 8, 16 and 32 s
// after a failed attempt.
const (
	DefaultRetryBase = time.Second
	DefaultRetries   = 5
)

// Schedule is the wait before each retry: base*2, base*4, ... (retries of
// them). A callback is tried once and retried len(Schedule) times.
func Schedule(base time.Duration, retries int) []time.Duration {
	out := make([]time.Duration, retries)
	for i := range out {
		out[i] = base << (i + 1)
	}
	return out
}
