package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/onair-dev/onair/token04"
)

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decode %s: %v", resp.Request.URL, err)
	}
}

func mustMint(t *testing.T, appID uint32, userID, secret string) string {
	t.Helper()
	tok, err := token04.Mint(appID, userID, secret, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
