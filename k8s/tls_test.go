package k8s

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// secretFile finds the Secret volume that puts file into c: the Secret's
// name and the key the file holds.
func secretFile(w workload, c *corev1.Container, file string) (secret, key string, err error) {
	for _, vm := range c.VolumeMounts {
		dir := strings.TrimSuffix(vm.MountPath, "/") + "/"
		if !strings.HasPrefix(file, dir) {
			continue
		}
		if vm.SubPath != "" || vm.SubPathExpr != "" {
			return "", "", fmt.Errorf("%s is mounted with a subPath, which the kubelet never updates: renewals would not reach it", vm.MountPath)
		}
		rel := strings.TrimPrefix(file, dir)
		for _, v := range w.pod.Spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.Secret == nil {
				return "", "", fmt.Errorf("volume %s at %s is not a Secret", v.Name, vm.MountPath)
			}
			if len(v.Secret.Items) == 0 {
				return v.Secret.SecretName, rel, nil
			}
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					return v.Secret.SecretName, it.Key, nil
				}
			}
			return "", "", fmt.Errorf("Secret volume %s does not project %s", v.Name, rel)
		}
		return "", "", fmt.Errorf("volumeMount %s names no volume", vm.Name)
	}
	return "", "", fmt.Errorf("%s is on no volume mount", file)
}

// TestTLSWiring checks the production overlay's transport security: every
// OnAir process serves TLS with a certificate from a Secret and talks TLS
// to etcd with a client certificate from a Secret; etcd serves clients over
// TLS and requires their certificates; the NATS servers serve TLS with the
// services' Secret, require client certificates (and so route over mutual
// TLS), and the room replicas reach them over tls:// with the CA and a
// client certificate; the Ingress talks HTTPS to the gateway. The dev
// overlay stays plaintext.
func TestTLSWiring(t *testing.T) {
	t.Run("production", func(t *testing.T) {
		o := render(t, "overlays/production")
		ocs := onairContainers(t, o)
		if len(ocs) == 0 {
			t.Fatal("no onair containers")
		}
		// mounted checks that --flag names the file key of a Secret
		// mounted into the container, and returns the Secret.
		mounted := func(oc onairContainer, flag, wantKey string) string {
			s := oc.settings[flag]
			if !s.literal || s.value == "" || !path.IsAbs(s.value) {
				t.Errorf("%s: --%s=%q (%s): want the absolute path of a mounted file", oc.where, flag, s.value, s.from)
				return ""
			}
			secret, key, err := secretFile(oc.w, oc.c, s.value)
			if err != nil {
				t.Errorf("%s: --%s=%s: %v", oc.where, flag, s.value, err)
				return ""
			}
			if key != wantKey {
				t.Errorf("%s: --%s reads key %s of Secret %s, want %s (the kubernetes.io/tls and cert-manager layout)", oc.where, flag, key, secret, wantKey)
			}
			return secret
		}
		listenerSecrets := map[string]bool{}
		var nats, room *onairContainer
		for _, oc := range ocs {
			pair := map[string]string{} // flag: Secret
			for _, flag := range []string{"tls-cert", "tls-key", "tls-ca"} {
				pair[flag] = mounted(oc, flag, map[string]string{"tls-cert": "tls.crt", "tls-key": "tls.key", "tls-ca": "ca.crt"}[flag])
			}
			if pair["tls-cert"] != pair["tls-key"] {
				t.Errorf("%s: a certificate and its key come from different Secrets: %v", oc.where, pair)
			}
			if oc.role == "nats" {
				// No etcd, no calls to the services: checked with the room
				// replicas below.
				nats = &oc
				for _, flag := range []string{"etcd-endpoints", "tls-server-name"} {
					if s, ok := oc.settings[flag]; ok {
						t.Errorf("%s: --%s is set (%s), but the nats role has no such flag", oc.where, flag, s.from)
					}
				}
				continue
			}
			if oc.role == "room" {
				room = &oc
			}
			listenerSecrets[pair["tls-cert"]] = true
			for flag, wantKey := range map[string]string{"etcd-cert": "tls.crt", "etcd-key": "tls.key", "etcd-ca": "ca.crt"} {
				pair[flag] = mounted(oc, flag, wantKey)
			}
			if pair["etcd-cert"] != pair["etcd-key"] {
				t.Errorf("%s: a certificate and its key come from different Secrets: %v", oc.where, pair)
			}
			if pair["tls-cert"] != "" && pair["tls-cert"] == pair["etcd-cert"] {
				t.Errorf("%s: the listeners' certificate and the etcd client certificate are the same Secret %s", oc.where, pair["tls-cert"])
			}
			// Services register pod IPs; the certificate names a fixed name.
			if s := oc.settings["tls-server-name"]; !s.literal || s.value == "" || net.ParseIP(s.value) != nil {
				t.Errorf("%s: --tls-server-name=%q (%s): want the DNS name in the services' certificate", oc.where, s.value, s.from)
			}
			for _, ep := range strings.Split(oc.settings["etcd-endpoints"].value, ",") {
				if u, err := url.Parse(strings.TrimSpace(ep)); err != nil || u.Scheme != "https" {
					t.Errorf("%s: etcd endpoint %q is not https://", oc.where, ep)
				}
			}
		}

		// NATS: room messages (user content) cross nodes on its client
		// connections and routes.
		if nats == nil || room == nil {
			t.Fatal("no nats or no room container")
		}
		natsSecret, _, _ := secretFile(nats.w, nats.c, nats.settings["tls-cert"].value)
		if len(listenerSecrets) != 1 || !listenerSecrets[natsSecret] {
			t.Errorf("%s: serves the certificate of Secret %q; want the one every OnAir listener serves (%v)", nats.where, natsSecret, sortedKeys(listenerSecrets))
		}
		// A member serving TLS routes over mutual TLS checked against
		// --tls-ca (checked above); clients must show a certificate too.
		if s := nats.settings["tls-verify-clients"]; !s.literal || s.value != "true" {
			t.Errorf("%s: --tls-verify-clients=%q (%s): production NATS must require the room replicas' client certificates", nats.where, s.value, s.from)
		}
		// The room replicas dial the servers by the names the members
		// route to each other by, so one name in the certificate
		// (*.nats-cluster.<namespace>.svc) serves both checks.
		routeHosts := map[string]bool{}
		for _, raw := range strings.Split(flagArgs(nats.c.Args)["routes"], ",") {
			if u, err := url.Parse(strings.TrimSpace(raw)); err == nil {
				routeHosts[strings.ReplaceAll(u.Hostname(), "$(POD_NAMESPACE)", o.deployments[0].Namespace)] = true
			}
		}
		for _, raw := range strings.Split(room.settings["nats-url"].value, ",") {
			u, err := url.Parse(strings.TrimSpace(raw))
			if err != nil || u.Scheme != "tls" {
				t.Errorf("%s: NATS URL %q is not tls://", room.where, raw)
				continue
			}
			if !routeHosts[u.Hostname()] {
				t.Errorf("%s: NATS URL %q: the host is none of the names the members route to each other by %v", room.where, raw, sortedKeys(routeHosts))
			}
		}
		if s := mounted(*room, "nats-ca", "ca.crt"); s != natsSecret {
			t.Errorf("%s: --nats-ca is from Secret %q, want the CA of the NATS servers' Secret %q", room.where, s, natsSecret)
		}
		if c, k := mounted(*room, "nats-cert", "tls.crt"), mounted(*room, "nats-key", "tls.key"); c != k {
			t.Errorf("%s: --nats-cert and --nats-key come from different Secrets %q, %q", room.where, c, k)
		}

		w, c := etcdWorkload(t, o)
		args := flagArgs(c.Args)
		if etcdClientScheme(t, c) != "https" {
			t.Errorf("%s: etcd serves its clients without TLS", w)
		}
		if args["client-cert-auth"] != "true" {
			t.Errorf("%s: etcd does not require client certificates (--client-cert-auth=true)", w)
		}
		for flag, wantKey := range map[string]string{"cert-file": "tls.crt", "key-file": "tls.key", "trusted-ca-file": "ca.crt"} {
			_, key, err := secretFile(w, c, args[flag])
			if err != nil || key != wantKey {
				t.Errorf("%s: --%s=%q: key %q, %v; want %s of a Secret volume", w, flag, args[flag], key, err, wantKey)
			}
		}

		for _, ing := range o.ingresses {
			if ing.Annotations["nginx.ingress.kubernetes.io/backend-protocol"] != "HTTPS" {
				t.Errorf("Ingress/%s: the gateway serves HTTPS, but the Ingress does not say backend-protocol HTTPS", ing.Name)
			}
		}
	})
	t.Run("dev", func(t *testing.T) {
		o := render(t, "overlays/dev")
		for _, oc := range onairContainers(t, o) {
			for _, flag := range []string{"tls-cert", "tls-key", "etcd-ca", "etcd-cert", "etcd-key", "nats-ca", "nats-cert", "nats-key", "tls-verify-clients"} {
				if s := oc.settings[flag]; s.value != "" || s.secret {
					t.Errorf("%s: --%s is set (%s); the dev overlay is plaintext", oc.where, flag, s.from)
				}
			}
			if s := oc.settings["nats-url"]; oc.role == "room" && strings.Contains(s.value, "tls://") {
				t.Errorf("%s: --nats-url=%q (%s); the dev overlay's NATS is plaintext", oc.where, s.value, s.from)
			}
		}
	})
}

// outside is a client outside the cluster.
var outside = net.ParseIP("203.0.113.7")

// source is where a connection comes from: a pod of the namespace with
// these labels, or (nil labels) a client outside the cluster.
type source map[string]string

// allowed evaluates the NetworkPolicies of o as Kubernetes does for a
// connection from src to port (a number or a container port name) of w's
// pods: allowed when no policy selects the pods for ingress, or some
// ingress rule of one that does admits both the source and the port.
func allowed(t *testing.T, o *objects, src source, w workload, port intstr.IntOrString, proto corev1.Protocol) bool {
	t.Helper()
	podLabels := labels.Set(w.pod.Labels)
	num := port.IntVal
	if port.Type == intstr.String {
		found := false
		for i := range w.pod.Spec.Containers {
			if cp, ok := containerPort(&w.pod.Spec.Containers[i], port); ok {
				num, found = cp.ContainerPort, true
			}
		}
		if !found {
			t.Fatalf("%s has no port %s", w, port.String())
		}
	}
	selected := false
	for _, np := range o.netpols {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatalf("NetworkPolicy/%s: %v", np.Name, err)
		}
		if !sel.Matches(podLabels) || !hasIngress(np) {
			continue
		}
		selected = true
		for _, rule := range np.Spec.Ingress {
			if portMatches(t, w, rule.Ports, num, proto) && fromMatches(t, np, rule.From, src) {
				return true
			}
		}
	}
	return !selected
}

func hasIngress(np *networkingv1.NetworkPolicy) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return true // Ingress is implied
	}
	for _, pt := range np.Spec.PolicyTypes {
		if pt == networkingv1.PolicyTypeIngress {
			return true
		}
	}
	return false
}

func portMatches(t *testing.T, w workload, ports []networkingv1.NetworkPolicyPort, num int32, proto corev1.Protocol) bool {
	t.Helper()
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		pp := corev1.ProtocolTCP
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pp != proto {
			continue
		}
		if p.Port == nil {
			return true
		}
		if p.Port.Type == intstr.String {
			for i := range w.pod.Spec.Containers {
				if cp, ok := containerPort(&w.pod.Spec.Containers[i], *p.Port); ok && cp.ContainerPort == num && portProtocol(cp.Protocol) == proto {
					return true
				}
			}
			continue
		}
		end := p.Port.IntVal
		if p.EndPort != nil {
			end = *p.EndPort
		}
		if num >= p.Port.IntVal && num <= end {
			return true
		}
	}
	return false
}

func fromMatches(t *testing.T, np *networkingv1.NetworkPolicy, from []networkingv1.NetworkPolicyPeer, src source) bool {
	t.Helper()
	if len(from) == 0 {
		return true
	}
	for _, peer := range from {
		switch {
		case peer.IPBlock != nil:
			_, cidr, err := net.ParseCIDR(peer.IPBlock.CIDR)
			if err != nil {
				t.Fatalf("NetworkPolicy/%s: %v", np.Name, err)
			}
			// Pod-to-pod traffic is matched by selectors, not ipBlock.
			if src == nil && cidr.Contains(outside) {
				excepted := false
				for _, e := range peer.IPBlock.Except {
					if _, ex, err := net.ParseCIDR(e); err == nil && ex.Contains(outside) {
						excepted = true
					}
				}
				if !excepted {
					return true
				}
			}
		case src == nil:
			// Selectors only match pods.
		case peer.NamespaceSelector != nil:
			// Any namespace selector is taken to admit the pod's own
			// namespace only if it is empty (all namespaces).
			nsSel, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
			if err != nil {
				t.Fatalf("NetworkPolicy/%s: %v", np.Name, err)
			}
			if !nsSel.Empty() {
				continue
			}
			if peer.PodSelector == nil {
				return true
			}
			fallthrough
		default:
			sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
			if err != nil {
				t.Fatalf("NetworkPolicy/%s: %v", np.Name, err)
			}
			if sel.Matches(labels.Set(src)) {
				return true
			}
		}
	}
	return false
}

// TestNetworkPolicies checks who can reach what in production: etcd only
// from OnAir pods (and its peer port only from its members), NATS's client
// port only from room pods and its route port only from its members (NATS
// pods reach neither etcd nor the services), the services' gRPC ports only
// from OnAir pods, the gateway's HTTP port and the media
// edges' WebRTC port from anywhere.
func TestNetworkPolicies(t *testing.T) {
	o := render(t, "overlays/production")
	get := func(kind, name string) workload {
		w, ok := o.workload(kind, name)
		if !ok {
			t.Fatalf("no %s/%s", kind, name)
		}
		return w
	}
	etcd := get("StatefulSet", "etcd")
	nats := get("StatefulSet", "nats")
	gateway := get("Deployment", "gateway")
	services := []workload{get("Deployment", "auth"), get("Deployment", "room"), get("Deployment", "stream"), get("DaemonSet", "media")}
	onairPods := map[string]source{"gateway": gateway.pod.Labels}
	for _, w := range services {
		onairPods[w.name] = w.pod.Labels
	}
	stranger := source{"app": "something-else"}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP

	type check struct {
		what  string
		src   source
		to    workload
		port  intstr.IntOrString
		proto corev1.Protocol
		want  bool
	}
	checks := []check{
		{"outside to the gateway's HTTP port", nil, gateway, intstr.FromString("http"), tcp, true},
		{"a stranger pod to the gateway's HTTP port", stranger, gateway, intstr.FromString("http"), tcp, true},
		{"outside to the media WebRTC port", nil, get("DaemonSet", "media"), intstr.FromString("webrtc-udp"), udp, true},
		{"outside to etcd's client port", nil, etcd, intstr.FromString("client"), tcp, false},
		{"outside to etcd's peer port", nil, etcd, intstr.FromString("peer"), tcp, false},
		{"a stranger pod to etcd's client port", stranger, etcd, intstr.FromString("client"), tcp, false},
		{"an etcd member to etcd's peer port", etcd.pod.Labels, etcd, intstr.FromString("peer"), tcp, true},
		{"an etcd member to etcd's client port", etcd.pod.Labels, etcd, intstr.FromString("client"), tcp, true},
		// NATS: room replicas to the client port, members to the route port.
		{"outside to NATS's client port", nil, nats, intstr.FromString("client"), tcp, false},
		{"outside to NATS's route port", nil, nats, intstr.FromString("cluster"), tcp, false},
		{"a stranger pod to NATS's client port", stranger, nats, intstr.FromString("client"), tcp, false},
		{"a stranger pod to NATS's route port", stranger, nats, intstr.FromString("cluster"), tcp, false},
		{"a NATS server to NATS's route port", nats.pod.Labels, nats, intstr.FromString("cluster"), tcp, true},
		{"a NATS server to NATS's client port", nats.pod.Labels, nats, intstr.FromString("client"), tcp, false},
		{"an etcd member to NATS's client port", etcd.pod.Labels, nats, intstr.FromString("client"), tcp, false},
		{"a NATS server to etcd's client port", nats.pod.Labels, etcd, intstr.FromString("client"), tcp, false},
		{"a NATS server to the gateway's HTTP port", nats.pod.Labels, gateway, intstr.FromString("http"), tcp, true},
		// Relays: a media edge pulls a stream from another over gRPC.
		{"a media edge to another media edge's gRPC port (relay)", get("DaemonSet", "media").pod.Labels,
			get("DaemonSet", "media"), intstr.FromString("grpc"), tcp, true},
	}
	for name, src := range onairPods {
		checks = append(checks,
			check{name + " to etcd's client port", src, etcd, intstr.FromString("client"), tcp, true},
			check{name + " to etcd's peer port", src, etcd, intstr.FromString("peer"), tcp, false},
			// Only room talks to NATS; no OnAir pod joins its routes.
			check{name + " to NATS's client port", src, nats, intstr.FromString("client"), tcp, name == "room"},
			check{name + " to NATS's route port", src, nats, intstr.FromString("cluster"), tcp, false})
		for _, w := range services {
			checks = append(checks, check{name + " to " + w.name + "'s gRPC port", src, w, intstr.FromString("grpc"), tcp, true})
		}
	}
	for _, w := range services {
		checks = append(checks,
			check{"outside to " + w.name + "'s gRPC port", nil, w, intstr.FromString("grpc"), tcp, false},
			check{"a stranger pod to " + w.name + "'s gRPC port", stranger, w, intstr.FromString("grpc"), tcp, false},
			check{"a NATS server to " + w.name + "'s gRPC port", nats.pod.Labels, w, intstr.FromString("grpc"), tcp, false},
			check{"outside to " + w.name + "'s gRPC port over UDP", nil, w, intstr.FromInt32(9090), udp, false})
	}
	for _, c := range checks {
		if got := allowed(t, o, c.src, c.to, c.port, c.proto); got != c.want {
			t.Errorf("%s: allowed %v, want %v", c.what, got, c.want)
		}
	}

	// A default deny: a pod that no other policy mentions gets nothing.
	nobody := workload{kind: "Deployment", name: "new-thing", pod: &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "new-thing"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 80}}}}},
	}}
	if allowed(t, o, nil, nobody, intstr.FromString("web"), tcp) {
		t.Error("a new workload's port is open to everyone: no default-deny ingress policy")
	}

	// Every policy selects some pod and names only ports that exist.
	for _, np := range o.netpols {
		sel, _ := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		ws := o.selecting(sel)
		if sel.Empty() {
			ws = o.workloads()
		}
		if len(ws) == 0 {
			t.Errorf("NetworkPolicy/%s selects no workload", np.Name)
		}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port == nil || p.Port.Type != intstr.String {
					continue
				}
				for _, w := range ws {
					found := false
					for i := range w.pod.Spec.Containers {
						if _, ok := containerPort(&w.pod.Spec.Containers[i], *p.Port); ok {
							found = true
						}
					}
					if !found {
						t.Errorf("NetworkPolicy/%s: %s has no port named %s", np.Name, w, p.Port.StrVal)
					}
				}
			}
		}
	}
}
