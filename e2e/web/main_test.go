package web

// How these tests run
//
// DESIGN.md: a browser is a non-Go WebRTC peer, so it runs in a network
// namespace that has only loopback. The simplest robust way to reach the
// server from there is to put the server in the same namespace: TestMain
// runs this test binary again, with the same flags, in a new network
// namespace (CLONE_NEWNET, which is `unshare -n`; plus a user namespace
// when not root), the child brings lo up (`ip link set lo up`, done with
// an ioctl so iproute2 is not needed) and checks that no other interface
// exists, and then everything (embedded etcd, every OnAir role, the
// gateway on an httptest server, the Go SDK peers and Chromium) runs in
// that one process tree on 127.0.0.1. Nothing can reach or be reached from
// any other address, whatever Chromium or pion try.
//
// Chromium is Debian's `chromium` (ONAIR_CHROMIUM names another binary),
// headless with fake camera and microphone, driven with chromedp. When it
// is missing the tests skip with a message, except in CI (CI set), where
// that is a failure: .ci/run installs it.
//
// Screenshots of the console pages go to t.ArtifactDir() (kept with
// `go test -artifacts`).

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const netnsEnv = "ONAIR_WEB_E2E_NETNS"

// chromium is the browser binary, or "" with skipReason saying why not.
var chromium, skipReason string

func TestMain(m *testing.M) {
	if os.Getenv(netnsEnv) == "" {
		if b, why := findChromium(); b == "" {
			if os.Getenv("CI") != "" {
				fmt.Fprintf(os.Stderr, "e2e/web: FAIL: %s (CI must install Debian's chromium: see .ci/run)\n", why)
				os.Exit(1)
			}
			skipReason = why
			os.Exit(m.Run())
		}
		code, err := inNetns()
		if err != nil {
			msg := fmt.Sprintf("cannot make a loopback-only network namespace: %v", err)
			if os.Getenv("CI") != "" {
				fmt.Fprintln(os.Stderr, "e2e/web: FAIL: "+msg)
				os.Exit(1)
			}
			skipReason = msg
			os.Exit(m.Run())
		}
		os.Exit(code)
	}
	// In the namespace.
	if err := loopbackUp(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e/web: bring lo up: %v\n", err)
		os.Exit(1)
	}
	if err := onlyLoopback(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e/web: %v\n", err)
		os.Exit(1)
	}
	chromium, _ = findChromium()
	os.Exit(m.Run())
}

func findChromium() (string, string) {
	names := []string{"chromium", "chromium-browser"}
	if b := os.Getenv("ONAIR_CHROMIUM"); b != "" {
		names = []string{b}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, ""
		}
	}
	return "", "no Chromium found (apt-get install -y chromium, or set ONAIR_CHROMIUM)"
}

// onlyLoopback checks that the namespace has no interface but an up lo.
func onlyLoopback() error {
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	var names []string
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			names = append(names, i.Name)
		} else if i.Flags&net.FlagUp == 0 {
			return fmt.Errorf("%s is down", i.Name)
		}
	}
	if len(names) > 0 {
		return fmt.Errorf("the namespace has interfaces besides loopback: %s", strings.Join(names, ", "))
	}
	return nil
}

func needBrowser(t *testing.T) {
	t.Helper()
	if chromium == "" {
		t.Skip(skipReason)
	}
}
