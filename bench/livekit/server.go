package main

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// serverConfig is livekit.yaml: LiveKit on loopback only, with send-side
// bandwidth estimation (see the file's comments).
//
//go:embed livekit.yaml
var serverConfig []byte

// defaultServer is where shared/peers/livekit/build.sh puts the server.
func defaultServer() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cache", "onair-peers", "livekit-server")
}

// lkServer is a livekit-server process lkbench started.
type lkServer struct {
	cmd     *exec.Cmd
	dir     string
	logPath string
	done    chan struct{}
}

// startServer runs `bin --dev --bind 127.0.0.1 --config livekit.yaml`,
// logging to logPath (a file in a temporary directory when empty), and
// waits until it accepts connections on addr.
func startServer(ctx context.Context, bin, logPath, addr string, log *slog.Logger) (*lkServer, error) {
	dir, err := os.MkdirTemp("", "lkbench-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "livekit.yaml")
	if err := os.WriteFile(conf, serverConfig, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if logPath == "" {
		logPath = filepath.Join(dir, "livekit.log")
	}
	out, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(bin, "--dev", "--bind", "127.0.0.1", "--config", conf)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &lkServer{cmd: cmd, dir: dir, logPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	log.Info("livekit-server started", "pid", cmd.Process.Pid, "log", logPath)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.done:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("livekit-server exited at start (log: %s)", logPath)
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("livekit-server does not answer on %s after 15 s (log: %s)", addr, logPath)
		}
	}
}

// Stop ends the server (SIGTERM, then SIGKILL after 5 s) and removes its
// configuration.
func (s *lkServer) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = os.Remove(filepath.Join(s.dir, "livekit.yaml"))
}
