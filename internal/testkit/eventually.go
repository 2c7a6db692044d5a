package testkit

import (
	"testing"
	"time"
)

// EventuallyWithin is how long Eventually waits: a generous bound for
// correctness on a loaded machine, not a performance check.
const EventuallyWithin = 30 * time.Second

// Eventually polls cond until it holds, failing the test with what it was
// waiting for after EventuallyWithin.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(EventuallyWithin)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
