// Package testproc holds what tests that run the onair binary as real
// processes share: building it, picking loopback addresses, and a log
// buffer the processes and the test use at once.
package testproc

import (
	"bytes"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// BuildOnair builds ./cmd/onair of this module into the test's temporary
// directory and returns its path. It skips the test when there is no go
// command to build with.
func BuildOnair(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is needed to build onair:", err)
	}
	bin := filepath.Join(t.TempDir(), "onair")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/onair")
	cmd.Dir = moduleRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/onair: %v\n%s", err, out)
	}
	return bin
}

// moduleRoot is the repository's root, found from this file's place in it,
// so callers in any package build the same binary.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// FreeAddr reserves a loopback TCP address by listening and closing.
func FreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Log collects output that processes write while the test reads it.
type Log struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
