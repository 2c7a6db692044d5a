package testproc_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/onair-dev/onair/internal/testproc"
)

// TestMain is also the child of the tests: with TESTPROC_LISTEN set, it
// listens there and says so, as an onair process would, until it is
// stopped, or exits with the listen's error.
func TestMain(m *testing.M) {
	if addr := os.Getenv("TESTPROC_LISTEN"); addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("listening on %s\n", addr)
		for {
			c, err := l.Accept()
			if err != nil {
				os.Exit(1)
			}
			c.Close()
		}
	}
	os.Exit(m.Run())
}

// An address taken between FreeAddr and the listen: the process is
// started again on a new one.
func TestStartOnFreeAddrsStartsAgainOnNewAddresses(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var tries []string
	var p *testproc.Proc
	testproc.StartOnFreeAddrs(t, func() []*testproc.Proc {
		addr := testproc.FreeAddr(t)
		if len(tries) == 0 { // as if another test took it meanwhile
			addr = taken.Addr().String()
		}
		tries = append(tries, addr)
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "TESTPROC_LISTEN="+addr)
		p = testproc.Start(t, cmd)
		return []*testproc.Proc{p}
	}, func() bool {
		return strings.Contains(p.Log.String(), "listening on "+tries[len(tries)-1])
	})
	if len(tries) != 2 || tries[1] == tries[0] {
		t.Fatalf("started on %v, want the taken address, then another", tries)
	}
	if !p.Alive() {
		t.Fatal("the process that listens has exited")
	}
	p.Stop()
	if p.Alive() {
		t.Fatal("alive after Stop")
	}
}
