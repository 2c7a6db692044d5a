package k8s

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// grpcRoles serve gRPC and register in etcd; the gateway serves HTTP only.
var grpcRoles = map[string]bool{"auth": true, "room": true, "stream": true, "media": true}

// clusterRoles are the roles a container may run (`onair dev` and
// `onair token` are not for a cluster). nats is neither a gRPC role nor the
// gateway: a NATS server, without etcd, that carries room messages.
var clusterRoles = map[string]bool{"auth": true, "room": true, "stream": true, "media": true, "gateway": true, "nats": true}

// secretFlags are the flags whose values must come from a Secret.
var secretFlags = []string{"internal-key", "admin-key", "nats-password", "nats-token"}

// pendingFlags are flags the manifests use before cmd/onair has them (the
// media edge's WebRTC flags). They are tolerated, with a log line, only
// while the role has none of them: as soon as one exists, all are checked,
// so a flag that lands under another name fails the test.
var pendingFlags = map[string][]string{
	"media": {"media-udp-port", "public-ip"},
}

// flagInfo is one flag of `onair <role> -h`.
type flagInfo struct {
	typ        string // "" for a bool flag, else string, duration, int, float, ...
	def        string // default value, unquoted
	hasDefault bool   // false: the zero value
}

var (
	usageFlag  = regexp.MustCompile(`^  -([^\s=]+)(?: (\S+))?(?:\t(.*))?$`)
	usageText  = regexp.MustCompile(`^    \t(.*)$`)
	usageDeflt = regexp.MustCompile(`\(default (.*)\)$`)
)

// parseUsage reads the flags out of the standard flag package's usage
// output: a line "  -name type" (or "  -x\tusage" for a one-letter bool),
// then usage lines indented with four spaces and a tab, the last ending in
// "(default value)" unless the default is the zero value.
func parseUsage(usage string) map[string]flagInfo {
	flags := map[string]flagInfo{}
	var name string
	var text []string
	flush := func() {
		if name == "" {
			return
		}
		f := flags[name]
		if m := usageDeflt.FindStringSubmatch(strings.Join(text, "\n")); m != nil {
			f.def, f.hasDefault = m[1], true
			if s, err := strconv.Unquote(m[1]); err == nil && strings.HasPrefix(m[1], `"`) {
				f.def = s
			}
		}
		flags[name] = f
		name, text = "", nil
	}
	for _, line := range strings.Split(usage, "\n") {
		if m := usageFlag.FindStringSubmatch(line); m != nil {
			flush()
			name = m[1]
			flags[name] = flagInfo{typ: m[2]}
			if m[3] != "" {
				text = append(text, m[3])
			}
			continue
		}
		if m := usageText.FindStringSubmatch(line); m != nil && name != "" {
			text = append(text, m[1])
			continue
		}
		flush()
	}
	flush()
	return flags
}

func TestParseUsage(t *testing.T) {
	stub := `usage: onair media [flags]

Every flag can also be set by its ONAIR_* environment variable (--grpc-addr: ONAIR_GRPC_ADDR).

  -advertise-addr string
    	gRPC address other services dial, registered in etcd (default: the listen address)
  -debug-tokens
    	auth: enable IssueDebugToken (development only)
  -drain-timeout duration
    	how long in-flight calls get to finish on SIGTERM (default 10s)
  -etcd-endpoints string
    	comma-separated etcd client URLs (default "http://127.0.0.1:2379")
  -login-rate float
    	room: logins per second per room on each replica (default 200)
  -media-udp-port int
    	the one UDP port of every WebRTC session
    	(ICE UDP mux) (default 7882)
  -v	verbose
  -name string
    	a "quoted" default (default "a b")
`
	got := parseUsage(stub)
	want := map[string]flagInfo{
		"advertise-addr": {typ: "string"},
		"debug-tokens":   {},
		"drain-timeout":  {typ: "duration", def: "10s", hasDefault: true},
		"etcd-endpoints": {typ: "string", def: "http://127.0.0.1:2379", hasDefault: true},
		"login-rate":     {typ: "float", def: "200", hasDefault: true},
		"media-udp-port": {typ: "int", def: "7882", hasDefault: true},
		"v":              {},
		"name":           {typ: "string", def: "a b", hasDefault: true},
	}
	if len(got) != len(want) {
		t.Errorf("parsed %d flags %v, want %d", len(got), sortedKeys(got), len(want))
	}
	for n, w := range want {
		if g, ok := got[n]; !ok || g != w {
			t.Errorf("flag %s: got %+v (found %v), want %+v", n, g, ok, w)
		}
	}
}

var (
	binOnce    sync.Once
	binPath    string
	binErr     error
	usageMu    sync.Mutex
	usageCache = map[string]map[string]flagInfo{}
)

// roleFlags builds cmd/onair (once) and returns the flags of
// `onair <role> -h`.
func roleFlags(t *testing.T, role string) map[string]flagInfo {
	t.Helper()
	if testing.Short() {
		t.Skip("builds cmd/onair; skipped with -short")
	}
	binOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("the go command is needed to build cmd/onair: %w", err)
			return
		}
		binPath = filepath.Join(workDir, "onair")
		cmd := exec.Command(goBin, "build", "-o", binPath, "./cmd/onair")
		cmd.Dir = ".." // the module root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/onair: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	usageMu.Lock()
	defer usageMu.Unlock()
	if f, ok := usageCache[role]; ok {
		return f
	}
	out, err := exec.Command(binPath, role, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("onair %s -h: %v\n%s", role, err, out)
	}
	f := parseUsage(string(out))
	if len(f) == 0 {
		t.Fatalf("onair %s -h printed no flags:\n%s", role, out)
	}
	usageCache[role] = f
	return f
}

func envName(flag string) string {
	return "ONAIR_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// setting is the effective value of one flag in a container.
type setting struct {
	value   string // as written; $(VAR) is not expanded
	literal bool   // known when rendering (not a Secret, not the downward API)
	secret  bool   // from a Secret
	field   string // downward API fieldPath
	from    string // where it is set
}

// onairContainer is one container running the onair image.
type onairContainer struct {
	w        workload
	c        *corev1.Container
	role     string
	flags    map[string]flagInfo
	settings map[string]setting
	where    string
}

// onairContainers finds the containers that run onair, checks each one's
// role, flags and ONAIR_* variables against the binary, and works out every
// flag's effective value (command line over env over envFrom over default).
func onairContainers(t *testing.T, o *objects) []onairContainer {
	t.Helper()
	var ocs []onairContainer
	for _, w := range o.workloads() {
		for i := range w.pod.Spec.Containers {
			c := &w.pod.Spec.Containers[i]
			if repo, _ := imageRepo(c.Image); repo != onairImage {
				continue
			}
			oc := onairContainer{w: w, c: c, where: fmt.Sprintf("%s container %s", w, c.Name), settings: map[string]setting{}}
			if len(c.Command) > 0 {
				t.Errorf("%s: command %v overrides the image's ENTRYPOINT /onair; put the role in args", oc.where, c.Command)
			}
			if len(c.Args) == 0 || !clusterRoles[c.Args[0]] {
				t.Errorf("%s: args %v: the first must be one of the roles %v", oc.where, c.Args, sortedKeys(clusterRoles))
				continue
			}
			oc.role = c.Args[0]
			oc.flags = roleFlags(t, oc.role)
			oc.resolve(t, o)
			ocs = append(ocs, oc)
		}
	}
	return ocs
}

// flagStatus reports whether the role has the flag, or the flag is pending
// (see pendingFlags).
func (oc *onairContainer) flagStatus(name string) (known, pending bool) {
	if _, ok := oc.flags[name]; ok {
		return true, false
	}
	ps := pendingFlags[oc.role]
	landed := slices.ContainsFunc(ps, func(p string) bool { _, ok := oc.flags[p]; return ok })
	return false, slices.Contains(ps, name) && !landed
}

// known reports whether the role has the flag, tolerating a pending one.
func (oc *onairContainer) known(t *testing.T, name, how string) bool {
	t.Helper()
	switch known, pending := oc.flagStatus(name); {
	case known:
		return true
	case pending:
		t.Logf("NOTE %s: %s sets --%s, which `onair %s -h` does not list yet: tolerated as pending (see pendingFlags)", oc.where, how, name, oc.role)
		return true
	}
	t.Errorf("%s: %s: `onair %s` has no flag --%s", oc.where, how, oc.role, name)
	return false
}

func TestPendingFlags(t *testing.T) {
	media := func(flags ...string) *onairContainer {
		oc := &onairContainer{role: "media", flags: map[string]flagInfo{"grpc-addr": {typ: "string"}}}
		for _, f := range flags {
			oc.flags[f] = flagInfo{typ: "string"}
		}
		return oc
	}
	for _, tc := range []struct {
		oc             *onairContainer
		flag           string
		known, pending bool
	}{
		{media(), "grpc-addr", true, false},
		{media(), "media-udp-port", false, true},
		{media(), "public-ip", false, true},
		{media(), "no-such-flag", false, false},
		// One of them landed: the others are no longer excused.
		{media("public-ip"), "media-udp-port", false, false},
		{media("public-ip", "media-udp-port"), "media-udp-port", true, false},
		{&onairContainer{role: "room", flags: map[string]flagInfo{}}, "public-ip", false, false},
	} {
		known, pending := tc.oc.flagStatus(tc.flag)
		if known != tc.known || pending != tc.pending {
			t.Errorf("%s --%s with flags %v: known %v pending %v, want %v %v",
				tc.oc.role, tc.flag, sortedKeys(tc.oc.flags), known, pending, tc.known, tc.pending)
		}
	}
}

func (oc *onairContainer) resolve(t *testing.T, o *objects) {
	t.Helper()
	for name, f := range oc.flags {
		if f.hasDefault {
			oc.settings[name] = setting{value: f.def, literal: true, from: "default"}
		}
	}
	// Every ONAIR_* variable names a flag: the binary ignores the rest.
	fromEnv := func(envVar, how string, s setting) {
		if !strings.HasPrefix(envVar, "ONAIR_") {
			return
		}
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(envVar, "ONAIR_"), "_", "-"))
		if envName(name) != envVar || !oc.known(t, name, how+" "+envVar) {
			return
		}
		oc.settings[name] = s
	}
	for _, ef := range oc.c.EnvFrom {
		if r := ef.ConfigMapRef; r != nil {
			if cm := o.configMap(r.Name); cm != nil {
				for _, k := range sortedKeys(cm.Data) {
					fromEnv(ef.Prefix+k, "envFrom ConfigMap", setting{value: cm.Data[k], literal: true, from: "ConfigMap " + r.Name})
				}
			}
		}
		if r := ef.SecretRef; r != nil {
			if s := o.secret(r.Name); s != nil {
				for _, k := range sortedKeys(s.Data) {
					fromEnv(ef.Prefix+k, "envFrom Secret", setting{secret: true, from: "Secret " + r.Name})
				}
			}
		}
	}
	for _, e := range oc.c.Env {
		s := setting{value: e.Value, literal: !strings.Contains(e.Value, "$("), from: "env " + e.Name}
		if vf := e.ValueFrom; vf != nil {
			s = setting{from: "env " + e.Name}
			switch {
			case vf.FieldRef != nil:
				s.field = vf.FieldRef.FieldPath
			case vf.SecretKeyRef != nil:
				s.secret = true
			case vf.ConfigMapKeyRef != nil:
				if cm := o.configMap(vf.ConfigMapKeyRef.Name); cm != nil {
					s.value, s.literal = cm.Data[vf.ConfigMapKeyRef.Key], true
				}
			}
		}
		fromEnv(e.Name, "env", s)
	}
	seen := map[string]bool{}
	for _, a := range oc.c.Args[1:] {
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			t.Errorf("%s: argument %q is not a flag (onair takes no positional arguments)", oc.where, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if seen[name] {
			t.Errorf("%s: --%s given twice", oc.where, name)
		}
		seen[name] = true
		if !oc.known(t, name, "argument "+strconv.Quote(a)) {
			continue
		}
		if f, ok := oc.flags[name]; ok && f.typ == "" && !hasValue {
			value = "true"
		} else if !hasValue {
			t.Errorf("%s: write %q as --%s=value", oc.where, a, name)
			continue
		}
		oc.settings[name] = setting{value: value, literal: !strings.Contains(value, "$("), from: "argument"}
	}
	// Literal values must parse as the flag's type, or the binary exits.
	for _, name := range sortedKeys(oc.settings) {
		s, f := oc.settings[name], oc.flags[name]
		if !s.literal || s.from == "default" {
			continue
		}
		var err error
		switch f.typ {
		case "":
			if _, ok := oc.flags[name]; ok {
				_, err = strconv.ParseBool(s.value)
			}
		case "duration":
			_, err = time.ParseDuration(s.value)
		case "int":
			_, err = strconv.ParseInt(s.value, 0, 64)
		case "uint":
			_, err = strconv.ParseUint(s.value, 0, 64)
		case "float":
			_, err = strconv.ParseFloat(s.value, 64)
		}
		if err != nil {
			t.Errorf("%s: --%s=%q (%s) is not a valid %s: %v", oc.where, name, s.value, s.from, f.typ, err)
		}
	}
}

// listenPort checks that a listen address binds every interface (the
// kubelet probes, and peers dial, the pod IP) and returns its port.
func (oc *onairContainer) listenPort(t *testing.T, flag string) (int32, bool) {
	t.Helper()
	s, ok := oc.settings[flag]
	if !ok || s.value == "" {
		t.Errorf("%s: --%s is not set", oc.where, flag)
		return 0, false
	}
	host, port, err := net.SplitHostPort(s.value)
	p, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || perr != nil || p == 0 {
		t.Errorf("%s: --%s=%q (%s) is not host:port", oc.where, flag, s.value, s.from)
		return 0, false
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("%s: --%s=%q (%s) does not listen on the pod IP; use 0.0.0.0", oc.where, flag, s.value, s.from)
	}
	return int32(p), true
}

func TestOnairContainersMatchTheBinary(t *testing.T) {
	eachRendered(t, func(t *testing.T, o *objects) {
		ocs := onairContainers(t, o)
		roles := map[string]int{}
		endpoints := map[string]bool{}
		for _, oc := range ocs {
			roles[oc.role]++
			checkOnairContainer(t, oc)
			if oc.role == "nats" {
				continue // no etcd
			}
			if s := oc.settings["etcd-endpoints"]; s.from == "default" || !s.literal {
				t.Errorf("%s: --etcd-endpoints comes from %s, want the ConfigMap", oc.where, s.from)
			} else {
				endpoints[s.value] = true
			}
		}
		for r := range clusterRoles {
			if roles[r] != 1 {
				t.Errorf("role %s runs in %d workloads, want 1", r, roles[r])
			}
		}
		if len(endpoints) != 1 {
			t.Errorf("the roles use different etcd endpoints: %v", sortedKeys(endpoints))
		}
	})
}

func checkOnairContainer(t *testing.T, oc onairContainer) {
	t.Helper()
	c := oc.c
	// The ports the flags configure; every container port must be one.
	ports := map[int32]corev1.Protocol{}
	// With --tls-cert every listener serves TLS only.
	tlsOn := oc.settings["tls-cert"].value != "" || oc.settings["tls-cert"].secret
	probes := map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe}

	if grpcRoles[oc.role] {
		grpcPort, ok := oc.listenPort(t, "grpc-addr")
		if ok {
			ports[grpcPort] = corev1.ProtocolTCP
			for what, p := range probes {
				switch {
				case p == nil:
				case tlsOn:
					// The kubelet's gRPC probe cannot speak TLS: probe the
					// HTTPS port (the kubelet does not verify certificates).
					httpPort, _ := oc.listenPort(t, "http-addr")
					if h := p.HTTPGet; h == nil || h.Scheme != corev1.URISchemeHTTPS || (h.Path != "/readyz" && h.Path != "/healthz") {
						t.Errorf("%s: with TLS on, the %s probe must be an HTTPS GET of /readyz or /healthz on --http-addr", oc.where, what)
					} else if cp, ok := containerPort(c, h.Port); !ok || cp.ContainerPort != httpPort {
						t.Errorf("%s: %s probe port %s is not %d (--http-addr)", oc.where, what, h.Port.String(), httpPort)
					}
				case what == "liveness":
					// gRPC health goes NOT_SERVING while a lost lease heals:
					// liveness on it would restart a process that is healing.
					httpPort, _ := oc.listenPort(t, "http-addr")
					if h := p.HTTPGet; h == nil || h.Path != "/healthz" {
						t.Errorf("%s: the liveness probe must be a GET of /healthz on --http-addr, not gRPC health", oc.where)
					} else if cp, ok := containerPort(c, h.Port); !ok || cp.ContainerPort != httpPort {
						t.Errorf("%s: liveness probe port %s is not %d (--http-addr)", oc.where, h.Port.String(), httpPort)
					}
				case p.GRPC == nil || p.GRPC.Port != grpcPort:
					t.Errorf("%s: %s probe must be grpc on port %d (--grpc-addr)", oc.where, what, grpcPort)
				}
			}
			adv := oc.settings["advertise-addr"]
			if want := fmt.Sprintf("$(POD_IP):%d", grpcPort); adv.value != want {
				t.Errorf("%s: --advertise-addr=%q (%s), want %q", oc.where, adv.value, adv.from, want)
			}
			if fieldRefEnv(c, "POD_IP") != "status.podIP" {
				t.Errorf("%s: POD_IP must come from the downward API (status.podIP)", oc.where)
			}
		}
		if s := oc.settings["http-addr"]; s.value != "" {
			if p, ok := oc.listenPort(t, "http-addr"); ok {
				if p == grpcPort {
					t.Errorf("%s: --http-addr and --grpc-addr share port %d", oc.where, p)
				}
				ports[p] = corev1.ProtocolTCP
			}
		}
		if s := oc.settings["internal-key"]; !s.secret {
			t.Errorf("%s: --internal-key must come from a Secret (it is from %q)", oc.where, s.from)
		}
	} else if oc.role == "nats" {
		checkNATSContainer(t, oc, ports, probes)
	} else { // gateway
		if httpPort, ok := oc.listenPort(t, "http-addr"); ok {
			ports[httpPort] = corev1.ProtocolTCP
			for what, p := range probes {
				if p == nil {
					continue
				}
				if p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
					t.Errorf("%s: %s probe must be GET /healthz", oc.where, what)
					continue
				}
				if tlsOn != (p.HTTPGet.Scheme == corev1.URISchemeHTTPS) {
					t.Errorf("%s: %s probe scheme %q, but TLS is %v", oc.where, what, p.HTTPGet.Scheme, tlsOn)
				}
				if cp, ok := containerPort(c, p.HTTPGet.Port); !ok || cp.ContainerPort != httpPort {
					t.Errorf("%s: %s probe port %s is not %d (--http-addr)", oc.where, what, p.HTTPGet.Port.String(), httpPort)
				}
			}
		}
	}
	if oc.role == "auth" {
		if s := oc.settings["admin-key"]; !s.secret {
			t.Errorf("%s: --admin-key must come from a Secret (it is from %q)", oc.where, s.from)
		}
	}
	for name, s := range oc.settings {
		if slices.Contains(secretFlags, name) && s.from != "default" && !s.secret {
			t.Errorf("%s: --%s is set from %s; keys belong in the Secret", oc.where, name, s.from)
		}
	}
	// NATS: the servers and the room replicas give the same user, the
	// password from the Secret; no other role talks to NATS.
	if s := oc.settings["nats-url"]; oc.role != "room" && s.from != "default" && s.from != "" {
		t.Errorf("%s: --nats-url is set (%s), but only room talks to NATS", oc.where, s.from)
	}
	if oc.role == "room" || oc.role == "nats" {
		if s := oc.settings["nats-user"]; !s.literal || s.value == "" {
			t.Errorf("%s: --nats-user is not set (%s): the servers require a user", oc.where, s.from)
		}
		if s := oc.settings["nats-password"]; !s.secret {
			t.Errorf("%s: --nats-password must come from a Secret (it is from %q)", oc.where, s.from)
		}
	}
	if oc.role == "room" {
		if s := oc.settings["nats-url"]; s.from == "default" || !s.literal || s.value == "" {
			t.Errorf("%s: --nats-url comes from %s; want the NATS servers of the manifests", oc.where, s.from)
		}
	}

	if oc.role == "media" {
		s, ok := oc.settings["media-udp-port"]
		p, err := strconv.ParseUint(s.value, 10, 16)
		if !ok || err != nil || p == 0 {
			t.Errorf("%s: --media-udp-port=%q is not a port", oc.where, s.value)
		} else {
			ports[int32(p)] = corev1.ProtocolUDP
			cp, ok := containerPort(c, intstr.FromInt32(int32(p)))
			if !ok || portProtocol(cp.Protocol) != corev1.ProtocolUDP || cp.HostPort != int32(p) {
				t.Errorf("%s: --media-udp-port=%d needs a UDP container port %d with hostPort %d", oc.where, p, p, p)
			}
		}
		ip := oc.settings["public-ip"]
		if ip.field != "status.hostIP" && (!ip.literal || net.ParseIP(ip.value) == nil) {
			t.Errorf("%s: --public-ip (%s) must be status.hostIP from the downward API or a literal IP", oc.where, ip.from)
		}
	}

	for _, cp := range c.Ports {
		if proto, ok := ports[cp.ContainerPort]; !ok || proto != portProtocol(cp.Protocol) {
			t.Errorf("%s: container port %s %d/%s is not configured by any flag", oc.where, cp.Name, cp.ContainerPort, portProtocol(cp.Protocol))
		}
	}

	if oc.role == "nats" {
		return // no registration, no drain
	}
	// SIGTERM: deregister, (preStop sleep,) drain; all before the kill.
	drain, err := time.ParseDuration(oc.settings["drain-timeout"].value)
	if err != nil {
		t.Errorf("%s: --drain-timeout: %v", oc.where, err)
	}
	var sleep time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		if s := c.Lifecycle.PreStop.Sleep; s != nil {
			sleep = time.Duration(s.Seconds) * time.Second
		} else {
			t.Errorf("%s: preStop must be the sleep action (the image has no shell)", oc.where)
		}
	}
	var grace time.Duration
	if g := oc.w.pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace < sleep+drain+5*time.Second {
		t.Errorf("%s: terminationGracePeriodSeconds %v is below preStop %v + --drain-timeout %v + 5s", oc.where, grace, sleep, drain)
	}
}

// checkNATSContainer checks a container of the nats role: it listens for
// clients and routes on the pod IP, its container ports are those two, its
// probes open a TCP connection to the client port (the role serves no
// HTTP), and it is a member of a cluster (--cluster-addr, --routes).
func checkNATSContainer(t *testing.T, oc onairContainer, ports map[int32]corev1.Protocol, probes map[string]*corev1.Probe) {
	t.Helper()
	clientPort, okClient := oc.listenPort(t, "client-addr")
	clusterPort, okCluster := oc.listenPort(t, "cluster-addr")
	if !okClient || !okCluster {
		return
	}
	if clientPort == clusterPort {
		t.Errorf("%s: --client-addr and --cluster-addr share port %d", oc.where, clientPort)
	}
	ports[clientPort], ports[clusterPort] = corev1.ProtocolTCP, corev1.ProtocolTCP
	for what, p := range probes {
		if p == nil {
			continue
		}
		if p.TCPSocket == nil {
			t.Errorf("%s: %s probe must be tcpSocket on the client port (the nats role serves no HTTP or gRPC)", oc.where, what)
		} else if cp, ok := containerPort(oc.c, p.TCPSocket.Port); !ok || cp.ContainerPort != clientPort {
			t.Errorf("%s: %s probe port %s is not %d (--client-addr)", oc.where, what, p.TCPSocket.Port.String(), clientPort)
		}
	}
	if s := oc.settings["routes"]; s.value == "" {
		t.Errorf("%s: --routes is not set: a lone server, not a cluster", oc.where)
	}
	if s := oc.settings["name"]; s.value != "$(POD_NAME)" || fieldRefEnv(oc.c, "POD_NAME") != "metadata.name" {
		t.Errorf("%s: --name=%q (%s), want $(POD_NAME) from the downward API", oc.where, s.value, s.from)
	}
}
