package k8s

import (
	"bufio"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// onairImage is the repository of the image every OnAir role runs.
const onairImage = "ghcr.io/onair-dev/onair"

// placeholder marks the base Secret's values that every overlay replaces.
const placeholder = "CHANGE-ME"

// workload is a Deployment, StatefulSet or DaemonSet.
type workload struct {
	kind, name string
	replicas   *int32 // nil for a DaemonSet, or a Deployment left to its HPA
	selector   *metav1.LabelSelector
	pod        *corev1.PodTemplateSpec
}

func (w workload) String() string { return w.kind + "/" + w.name }

func (o *objects) workloads() []workload {
	var ws []workload
	for _, d := range o.deployments {
		ws = append(ws, workload{"Deployment", d.Name, d.Spec.Replicas, d.Spec.Selector, &d.Spec.Template})
	}
	for _, s := range o.statefulSets {
		ws = append(ws, workload{"StatefulSet", s.Name, s.Spec.Replicas, s.Spec.Selector, &s.Spec.Template})
	}
	for _, d := range o.daemonSets {
		ws = append(ws, workload{"DaemonSet", d.Name, nil, d.Spec.Selector, &d.Spec.Template})
	}
	return ws
}

func (o *objects) workload(kind, name string) (workload, bool) {
	for _, w := range o.workloads() {
		if w.kind == kind && w.name == name {
			return w, true
		}
	}
	return workload{}, false
}

func (o *objects) configMap(name string) *corev1.ConfigMap {
	for _, c := range o.configMaps {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (o *objects) secret(name string) *corev1.Secret {
	for _, s := range o.secrets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (o *objects) service(name string) *corev1.Service {
	for _, s := range o.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// selecting returns the workloads whose pods sel matches.
func (o *objects) selecting(sel labels.Selector) []workload {
	var ws []workload
	for _, w := range o.workloads() {
		if !sel.Empty() && sel.Matches(labels.Set(w.pod.Labels)) {
			ws = append(ws, w)
		}
	}
	return ws
}

// expectedPods is how many pods of w there are at least: replicas, or the
// minReplicas of the HPA that scales it; 0 when unknown (a DaemonSet).
func (o *objects) expectedPods(w workload) int32 {
	for _, h := range o.hpas {
		if h.Spec.ScaleTargetRef.Kind == w.kind && h.Spec.ScaleTargetRef.Name == w.name && h.Spec.MinReplicas != nil {
			return *h.Spec.MinReplicas
		}
	}
	if w.kind == "DaemonSet" {
		return 0
	}
	if w.replicas == nil {
		return 1
	}
	return *w.replicas
}

func imageRepo(image string) (repo, tag string) {
	if i := strings.Index(image, "@"); i >= 0 {
		return image[:i], image[i:]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i], image[i+1:]
	}
	return image, ""
}

func portProtocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// containerPort resolves a numeric or named port of c.
func containerPort(c *corev1.Container, p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) || (p.Type == intstr.String && cp.Name == p.StrVal) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

func TestInventory(t *testing.T) {
	want := []string{
		"ConfigMap/onair-config", "Secret/onair-secrets",
		"Service/etcd", "Service/etcd-peer", "Service/gateway", "Service/nats", "Service/nats-cluster",
		"StatefulSet/etcd", "StatefulSet/nats", "Deployment/auth", "Deployment/room", "Deployment/stream", "Deployment/gateway", "DaemonSet/media",
		"PodDisruptionBudget/etcd", "PodDisruptionBudget/nats", "PodDisruptionBudget/auth", "PodDisruptionBudget/room", "PodDisruptionBudget/stream",
		"PodDisruptionBudget/gateway", "PodDisruptionBudget/media",
		"HorizontalPodAutoscaler/room", "HorizontalPodAutoscaler/gateway",
		"Ingress/gateway",
	}
	eachRendered(t, func(t *testing.T, o *objects) {
		have := map[string]int{}
		for _, r := range o.all {
			name := r.meta.Name
			if r.kind == "ConfigMap" || r.kind == "Secret" {
				// Generated: name-<hash>.
				if i := strings.LastIndex(name, "-"); i > 0 {
					name = name[:i]
				}
			}
			have[r.kind+"/"+name]++
		}
		for _, w := range want {
			if have[w] != 1 {
				t.Errorf("%s: rendered %d times, want once", w, have[w])
			}
		}
		if o.dir != "base" && have["Namespace/"+namespaceOf(o)] != 1 {
			t.Errorf("the overlay does not create its namespace %q", namespaceOf(o))
		}
	})
}

// namespaceOf is the namespace of the overlay's objects.
func namespaceOf(o *objects) string {
	for _, d := range o.deployments {
		return d.Namespace
	}
	return ""
}

func TestNamesAndNamespaces(t *testing.T) {
	eachRendered(t, func(t *testing.T, o *objects) {
		ns := namespaceOf(o)
		if o.dir == "base" && ns != "" {
			t.Errorf("the base must be namespace-less, found namespace %q", ns)
		}
		if o.dir != "base" && ns == "" {
			t.Errorf("the overlay sets no namespace")
		}
		seen := map[string]bool{}
		for _, r := range o.all {
			if seen[r.String()] {
				t.Errorf("%s rendered twice", r)
			}
			seen[r.String()] = true
			for _, e := range validation.IsDNS1123Subdomain(r.meta.Name) {
				t.Errorf("%s: name: %s", r, e)
			}
			if r.kind == "Namespace" {
				if r.meta.Name != ns {
					t.Errorf("%s: the workloads are in namespace %q", r, ns)
				}
				continue
			}
			if r.meta.Namespace != ns {
				t.Errorf("%s: namespace %q, want %q like the rest", r, r.meta.Namespace, ns)
			}
			if r.meta.Labels["app.kubernetes.io/part-of"] != "onair" {
				t.Errorf("%s: no app.kubernetes.io/part-of=onair label", r)
			}
		}
		for _, s := range o.services {
			for _, e := range validation.IsDNS1035Label(s.Name) {
				t.Errorf("Service/%s: name: %s", s.Name, e)
			}
		}
	})
}

func TestWorkloads(t *testing.T) {
	eachRendered(t, func(t *testing.T, o *objects) {
		for _, w := range o.workloads() {
			sel, err := metav1.LabelSelectorAsSelector(w.selector)
			if err != nil || sel.Empty() {
				t.Errorf("%s: bad or empty selector %v: %v", w, w.selector, err)
			} else if !sel.Matches(labels.Set(w.pod.Labels)) {
				t.Errorf("%s: selector %v does not match its pod labels %v", w, w.selector, w.pod.Labels)
			}
			if n := len(o.selecting(sel)); n != 1 {
				t.Errorf("%s: its selector matches the pods of %d workloads", w, n)
			}
			checkPodSecurity(t, w)
			for i := range w.pod.Spec.Containers {
				checkContainer(t, o, w, &w.pod.Spec.Containers[i])
			}
		}
	})
}

func checkPodSecurity(t *testing.T, w workload) {
	t.Helper()
	ps := w.pod.Spec
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot is not true", w)
	}
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsUser == nil || *ps.SecurityContext.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext.runAsUser is not a non-zero number (needed to verify runAsNonRoot)", w)
	}
	if ps.SecurityContext == nil || ps.SecurityContext.SeccompProfile == nil || ps.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccompProfile is not RuntimeDefault", w)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken is not false (nothing here talks to the API server)", w)
	}
	if ps.HostNetwork || ps.HostPID || ps.HostIPC {
		t.Errorf("%s: uses the host's network, PID or IPC namespace", w)
	}
	if ps.TerminationGracePeriodSeconds == nil {
		t.Errorf("%s: no terminationGracePeriodSeconds", w)
	}
}

func checkContainer(t *testing.T, o *objects, w workload, c *corev1.Container) {
	t.Helper()
	where := fmt.Sprintf("%s container %s", w, c.Name)
	repo, tag := imageRepo(c.Image)
	switch {
	case tag == "":
		t.Errorf("%s: image %q has no tag", where, c.Image)
	case o.dir == "overlays/production" && (tag == "latest" || tag == "dev"):
		t.Errorf("%s: production runs the moving tag %q", where, c.Image)
	case repo != onairImage && tag == "latest":
		t.Errorf("%s: third-party image %q is not pinned", where, c.Image)
	}

	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem is not true", where)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	}
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities are not exactly drop: [ALL]", where)
	}
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged", where)
	}

	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[res]
		lim, okLim := c.Resources.Limits[res]
		if !okReq || !okLim {
			t.Errorf("%s: %s request or limit missing", where, res)
			continue
		}
		if req.Sign() <= 0 || req.Cmp(lim) > 0 {
			t.Errorf("%s: %s request %s is not within (0, limit %s]", where, res, req.String(), lim.String())
		}
	}

	if c.ReadinessProbe == nil || c.LivenessProbe == nil {
		t.Errorf("%s: readiness and liveness probes are both required", where)
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
		if p == nil {
			continue
		}
		if h := p.HTTPGet; h != nil {
			if _, ok := containerPort(c, h.Port); !ok {
				t.Errorf("%s: HTTP probe port %s is not a container port", where, h.Port.String())
			}
		}
		if g := p.GRPC; g != nil {
			if cp, ok := containerPort(c, intstr.FromInt32(g.Port)); !ok || portProtocol(cp.Protocol) != corev1.ProtocolTCP {
				t.Errorf("%s: gRPC probe port %d is not a TCP container port", where, g.Port)
			}
		}
	}

	names := map[string]bool{}
	for _, p := range c.Ports {
		if p.Name == "" {
			t.Errorf("%s: port %d has no name", where, p.ContainerPort)
		}
		for _, e := range validation.IsValidPortName(p.Name) {
			t.Errorf("%s: port name %q: %s", where, p.Name, e)
		}
		if names[p.Name] {
			t.Errorf("%s: port name %q twice", where, p.Name)
		}
		names[p.Name] = true
		if p.HostPort != 0 && p.HostPort != p.ContainerPort {
			t.Errorf("%s: hostPort %d != containerPort %d", where, p.HostPort, p.ContainerPort)
		}
	}

	// Every $(VAR) must name an environment variable of the container,
	// or Kubernetes passes the text through unexpanded.
	vars := envNames(o, c)
	for _, s := range append(slices.Clone(c.Command), c.Args...) {
		for _, m := range varRef.FindAllStringSubmatch(s, -1) {
			if !vars[m[1]] {
				t.Errorf("%s: %q refers to $(%s), which is not in its environment", where, s, m[1])
			}
		}
	}
	for i, e := range c.Env {
		for _, m := range varRef.FindAllStringSubmatch(e.Value, -1) {
			if !slices.ContainsFunc(c.Env[:i], func(p corev1.EnvVar) bool { return p.Name == m[1] }) {
				t.Errorf("%s: env %s refers to $(%s), which is not defined before it", where, e.Name, m[1])
			}
		}
	}

	checkEnvRefs(t, o, where, c)
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// envNames is the set of environment variable names c gets.
func envNames(o *objects, c *corev1.Container) map[string]bool {
	names := map[string]bool{}
	for _, e := range c.Env {
		names[e.Name] = true
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			if cm := o.configMap(ef.ConfigMapRef.Name); cm != nil {
				for k := range cm.Data {
					names[ef.Prefix+k] = true
				}
			}
		}
		if ef.SecretRef != nil {
			if s := o.secret(ef.SecretRef.Name); s != nil {
				for k := range s.Data {
					names[ef.Prefix+k] = true
				}
				for k := range s.StringData {
					names[ef.Prefix+k] = true
				}
			}
		}
	}
	return names
}

// checkEnvRefs checks that every ConfigMap and Secret the container reads
// is rendered and has the keys it reads.
func checkEnvRefs(t *testing.T, o *objects, where string, c *corev1.Container) {
	t.Helper()
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil && o.configMap(ef.ConfigMapRef.Name) == nil {
			t.Errorf("%s: envFrom ConfigMap %q is not rendered", where, ef.ConfigMapRef.Name)
		}
		if ef.SecretRef != nil && o.secret(ef.SecretRef.Name) == nil {
			t.Errorf("%s: envFrom Secret %q is not rendered", where, ef.SecretRef.Name)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			continue
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			cm := o.configMap(r.Name)
			if cm == nil {
				t.Errorf("%s: env %s: ConfigMap %q is not rendered", where, e.Name, r.Name)
			} else if _, ok := cm.Data[r.Key]; !ok {
				t.Errorf("%s: env %s: ConfigMap %q has no key %q", where, e.Name, r.Name, r.Key)
			}
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil {
			s := o.secret(r.Name)
			if s == nil {
				t.Errorf("%s: env %s: Secret %q is not rendered", where, e.Name, r.Name)
			} else if _, ok := s.Data[r.Key]; !ok {
				t.Errorf("%s: env %s: Secret %q has no key %q", where, e.Name, r.Name, r.Key)
			}
		}
	}
}

func TestServicesAndIngress(t *testing.T) {
	eachRendered(t, func(t *testing.T, o *objects) {
		for _, s := range o.services {
			ws := o.selecting(labels.SelectorFromSet(s.Spec.Selector))
			if len(ws) == 0 {
				t.Errorf("Service/%s: selector %v matches no workload", s.Name, s.Spec.Selector)
			}
			for _, p := range s.Spec.Ports {
				target := p.TargetPort
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(p.Port)
				}
				for _, w := range ws {
					found := false
					for i := range w.pod.Spec.Containers {
						cp, ok := containerPort(&w.pod.Spec.Containers[i], target)
						if ok && portProtocol(cp.Protocol) == portProtocol(p.Protocol) {
							found = true
						}
					}
					if !found {
						t.Errorf("Service/%s port %s: targetPort %s is not a %s container port of %s",
							s.Name, p.Name, target.String(), portProtocol(p.Protocol), w)
					}
				}
			}
		}
		for _, ing := range o.ingresses {
			var backends []*networkingv1.IngressServiceBackend
			if b := ing.Spec.DefaultBackend; b != nil && b.Service != nil {
				backends = append(backends, b.Service)
			}
			for _, r := range ing.Spec.Rules {
				if r.HTTP == nil {
					continue
				}
				for _, p := range r.HTTP.Paths {
					if p.Backend.Service == nil {
						t.Errorf("Ingress/%s path %s: no Service backend", ing.Name, p.Path)
						continue
					}
					backends = append(backends, p.Backend.Service)
				}
			}
			if len(backends) == 0 {
				t.Errorf("Ingress/%s: no backends", ing.Name)
			}
			for _, b := range backends {
				s := o.service(b.Name)
				if s == nil {
					t.Errorf("Ingress/%s: backend Service %q is not rendered", ing.Name, b.Name)
					continue
				}
				if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool {
					return (b.Port.Name != "" && p.Name == b.Port.Name) || (b.Port.Number != 0 && p.Port == b.Port.Number)
				}) {
					t.Errorf("Ingress/%s: Service %s has no port %+v", ing.Name, b.Name, b.Port)
				}
			}
			for _, tls := range ing.Spec.TLS {
				for _, h := range tls.Hosts {
					if !slices.ContainsFunc(ing.Spec.Rules, func(r networkingv1.IngressRule) bool { return r.Host == h }) {
						t.Errorf("Ingress/%s: TLS host %q has no rule", ing.Name, h)
					}
				}
			}
		}
	})
}

func TestDisruptionBudgetsAndAutoscalers(t *testing.T) {
	eachRendered(t, func(t *testing.T, o *objects) {
		covered := map[string]bool{}
		for _, p := range o.pdbs {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err != nil {
				t.Errorf("PodDisruptionBudget/%s: %v", p.Name, err)
				continue
			}
			ws := o.selecting(sel)
			if len(ws) != 1 {
				t.Errorf("PodDisruptionBudget/%s: selects the pods of %d workloads, want 1", p.Name, len(ws))
				continue
			}
			w := ws[0]
			covered[w.String()] = true
			if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
				t.Errorf("PodDisruptionBudget/%s: set exactly one of minAvailable and maxUnavailable", p.Name)
				continue
			}
			if w.kind == "DaemonSet" {
				// Without a scale subresource only an integer minAvailable works.
				if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.Type != intstr.Int {
					t.Errorf("PodDisruptionBudget/%s: a DaemonSet's budget must be an integer minAvailable", p.Name)
				}
				continue
			}
			pods := o.expectedPods(w)
			if m := p.Spec.MinAvailable; m != nil {
				if m.Type != intstr.Int || m.IntVal < 1 {
					t.Errorf("PodDisruptionBudget/%s: minAvailable %s, want a positive integer", p.Name, m.String())
				} else if m.IntVal >= pods {
					t.Errorf("PodDisruptionBudget/%s: minAvailable %d with %d pods of %s blocks every eviction (node drains hang)", p.Name, m.IntVal, pods, w)
				}
			}
		}
		for _, w := range o.workloads() {
			if !covered[w.String()] {
				t.Errorf("%s has no PodDisruptionBudget", w)
			}
		}

		for _, h := range o.hpas {
			ref := h.Spec.ScaleTargetRef
			w, ok := o.workload(ref.Kind, ref.Name)
			if !ok || ref.APIVersion != "apps/v1" {
				t.Errorf("HorizontalPodAutoscaler/%s: target %s %s/%s is not rendered", h.Name, ref.APIVersion, ref.Kind, ref.Name)
				continue
			}
			if w.replicas != nil {
				t.Errorf("HorizontalPodAutoscaler/%s: %s sets replicas; every kubectl apply would reset what the autoscaler chose", h.Name, w)
			}
			if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
				t.Errorf("HorizontalPodAutoscaler/%s: need 1 <= minReplicas <= maxReplicas (%d)", h.Name, h.Spec.MaxReplicas)
			}
			if len(h.Spec.Metrics) == 0 {
				t.Errorf("HorizontalPodAutoscaler/%s: no metrics", h.Name)
			}
			for _, m := range h.Spec.Metrics {
				if m.Resource == nil {
					continue
				}
				for _, c := range w.pod.Spec.Containers {
					if _, ok := c.Resources.Requests[m.Resource.Name]; !ok {
						t.Errorf("HorizontalPodAutoscaler/%s: scales on %s but container %s requests none", h.Name, m.Resource.Name, c.Name)
					}
				}
			}
		}
	})
}

// etcdWorkload is the StatefulSet running etcd, and its container.
func etcdWorkload(t *testing.T, o *objects) (workload, *corev1.Container) {
	t.Helper()
	for _, w := range o.workloads() {
		for i := range w.pod.Spec.Containers {
			c := &w.pod.Spec.Containers[i]
			if repo, _ := imageRepo(c.Image); strings.HasSuffix(repo, "/etcd") {
				if w.kind != "StatefulSet" {
					t.Fatalf("etcd runs in a %s, want a StatefulSet", w)
				}
				return w, c
			}
		}
	}
	t.Fatal("no etcd container")
	return workload{}, nil
}

// flagArgs parses --name=value arguments.
func flagArgs(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		if name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "="); ok && strings.HasPrefix(a, "-") {
			m[name] = value
		}
	}
	return m
}

func fieldRefEnv(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			return e.ValueFrom.FieldRef.FieldPath
		}
	}
	return ""
}

func urlPort(t *testing.T, raw string) int32 {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("URL %q: %v", raw, err)
	}
	p, err := strconv.ParseInt(u.Port(), 10, 32)
	if err != nil {
		t.Fatalf("URL %q has no numeric port", raw)
	}
	return int32(p)
}

func TestEtcdCluster(t *testing.T) {
	eachRendered(t, func(t *testing.T, o *objects) {
		w, c := etcdWorkload(t, o)
		sts := o.statefulSets[slices.IndexFunc(o.statefulSets, func(s *appsv1.StatefulSet) bool { return s.Name == w.name })]
		if w.replicas == nil || *w.replicas != 3 {
			t.Fatalf("%s: %v replicas, want 3 members (a quorum that survives one loss)", w, w.replicas)
		}
		if sts.Spec.PodManagementPolicy != "Parallel" {
			t.Errorf("%s: podManagementPolicy must be Parallel, or the first member waits forever for a quorum", w)
		}
		args := flagArgs(c.Args)
		if fieldRefEnv(c, "POD_NAME") != "metadata.name" || fieldRefEnv(c, "POD_NAMESPACE") != "metadata.namespace" {
			t.Errorf("%s: POD_NAME and POD_NAMESPACE must come from the downward API", w)
		}
		if args["name"] != "$(POD_NAME)" {
			t.Errorf("%s: --name=%q, want $(POD_NAME)", w, args["name"])
		}

		peerSvc := o.service(sts.Spec.ServiceName)
		if peerSvc == nil {
			t.Fatalf("%s: serviceName %q is not rendered", w, sts.Spec.ServiceName)
		}
		if peerSvc.Spec.ClusterIP != corev1.ClusterIPNone || !peerSvc.Spec.PublishNotReadyAddresses {
			t.Errorf("Service/%s: the peer Service must be headless and publish not-ready addresses", peerSvc.Name)
		}
		if ws := o.selecting(labels.SelectorFromSet(peerSvc.Spec.Selector)); len(ws) != 1 || ws[0].String() != w.String() {
			t.Errorf("Service/%s does not select %s", peerSvc.Name, w)
		}

		clientPort := urlPort(t, args["listen-client-urls"])
		peerPort := urlPort(t, args["listen-peer-urls"])
		for _, p := range []int32{clientPort, peerPort} {
			if _, ok := containerPort(c, intstr.FromInt32(p)); !ok {
				t.Errorf("%s: listen port %d is not a container port", w, p)
			}
		}
		host := func(member string) string {
			return fmt.Sprintf("%s.%s.$(POD_NAMESPACE).svc", member, peerSvc.Name)
		}
		if want := fmt.Sprintf("http://%s:%d", host("$(POD_NAME)"), peerPort); args["initial-advertise-peer-urls"] != want {
			t.Errorf("%s: --initial-advertise-peer-urls=%q, want %q", w, args["initial-advertise-peer-urls"], want)
		}
		// Clients are served over TLS (https) or not, as the member listens.
		clientScheme := etcdClientScheme(t, c)
		if want := fmt.Sprintf("%s://%s:%d", clientScheme, host("$(POD_NAME)"), clientPort); args["advertise-client-urls"] != want {
			t.Errorf("%s: --advertise-client-urls=%q, want %q", w, args["advertise-client-urls"], want)
		}
		var members []string
		for i := range *w.replicas {
			m := fmt.Sprintf("%s-%d", w.name, i)
			members = append(members, fmt.Sprintf("%s=http://%s:%d", m, host(m), peerPort))
		}
		if got, want := args["initial-cluster"], strings.Join(members, ","); got != want {
			t.Errorf("%s: --initial-cluster=%q\nwant %q (StatefulSet name, replicas and serviceName)", w, got, want)
		}
		if args["initial-cluster-state"] != "new" || args["initial-cluster-token"] == "" {
			t.Errorf("%s: want --initial-cluster-state=new and an --initial-cluster-token", w)
		}

		// The data directory lives on the claim.
		dataDir := args["data-dir"]
		onClaim := false
		for _, vm := range c.VolumeMounts {
			if strings.HasPrefix(dataDir+"/", strings.TrimSuffix(vm.MountPath, "/")+"/") &&
				slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool { return p.Name == vm.Name }) {
				onClaim = true
			}
		}
		if !onClaim {
			t.Errorf("%s: --data-dir=%q is not on a volumeClaimTemplate", w, dataDir)
		}
		for _, p := range sts.Spec.VolumeClaimTemplates {
			if _, ok := p.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
				t.Errorf("%s: claim %s requests no storage", w, p.Name)
			}
		}

		// Quorum survives voluntary disruptions.
		for _, p := range o.pdbs {
			sel, _ := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if ws := o.selecting(sel); len(ws) == 1 && ws[0].String() == w.String() {
				if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntVal < *w.replicas/2+1 {
					t.Errorf("PodDisruptionBudget/%s: minAvailable must keep a quorum of %d", p.Name, *w.replicas/2+1)
				}
			}
		}

		// ONAIR_ETCD_ENDPOINTS: the client Service, on the port that leads
		// to etcd's client port.
		n := 0
		for _, cm := range o.configMaps {
			eps, ok := cm.Data["ONAIR_ETCD_ENDPOINTS"]
			if !ok {
				continue
			}
			n++
			for _, ep := range strings.Split(eps, ",") {
				checkEtcdEndpoint(t, o, w, c, clientScheme, clientPort, strings.TrimSpace(ep))
			}
		}
		if n == 0 {
			t.Error("no ConfigMap sets ONAIR_ETCD_ENDPOINTS")
		}
	})
}

// etcdClientScheme is the scheme of etcd's --listen-client-urls: http, or
// https when the member serves clients over TLS.
func etcdClientScheme(t *testing.T, c *corev1.Container) string {
	t.Helper()
	u, err := url.Parse(flagArgs(c.Args)["listen-client-urls"])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		t.Fatalf("etcd: --listen-client-urls is not one http(s) URL (%v)", err)
	}
	return u.Scheme
}

func checkEtcdEndpoint(t *testing.T, o *objects, w workload, c *corev1.Container, scheme string, clientPort int32, ep string) {
	t.Helper()
	u, err := url.Parse(ep)
	if err != nil || u.Scheme != scheme || u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
		t.Errorf("etcd endpoint %q: want %s://<service>:<port>, as etcd listens (%v)", ep, scheme, err)
		return
	}
	name, ns, _ := strings.Cut(u.Hostname(), ".")
	if ns != "" && !strings.HasPrefix(ns+".", namespaceOf(o)+".") {
		t.Errorf("etcd endpoint %q: not in the namespace of the workloads", ep)
	}
	s := o.service(name)
	if s == nil {
		t.Errorf("etcd endpoint %q: no Service %q", ep, name)
		return
	}
	if s.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Errorf("etcd endpoint %q: Service %s is the headless peer Service; use the client Service", ep, name)
	}
	if ws := o.selecting(labels.SelectorFromSet(s.Spec.Selector)); len(ws) != 1 || ws[0].String() != w.String() {
		t.Errorf("etcd endpoint %q: Service %s does not select %s", ep, name, w)
	}
	port, _ := strconv.ParseInt(u.Port(), 10, 32)
	i := slices.IndexFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == int32(port) })
	if i < 0 {
		t.Errorf("etcd endpoint %q: Service %s has no port %d", ep, name, port)
		return
	}
	cp, ok := containerPort(c, s.Spec.Ports[i].TargetPort)
	if !ok || cp.ContainerPort != clientPort {
		t.Errorf("etcd endpoint %q: Service port %d does not lead to etcd's client port %d", ep, port, clientPort)
	}
}

func TestSecrets(t *testing.T) {
	eachRendered(t, func(t *testing.T, o *objects) {
		if len(o.secrets) == 0 {
			t.Fatal("no Secret")
		}
		for _, s := range o.secrets {
			if len(s.StringData) > 0 {
				t.Errorf("Secret/%s: stringData (generators write data)", s.Name)
			}
			for k, v := range s.Data {
				has := strings.Contains(string(v), placeholder)
				switch {
				case o.dir == "base" && !has:
					t.Errorf("Secret/%s: base value of %s must be a visible %s placeholder", s.Name, k, placeholder)
				case o.dir != "base" && has:
					t.Errorf("Secret/%s: %s still holds the base placeholder", s.Name, k)
				case len(v) == 0:
					t.Errorf("Secret/%s: %s is empty", s.Name, k)
				}
				if o.dir == "overlays/production" && string(v) != testSecretEnv[k] {
					t.Errorf("Secret/%s: %s does not come from secret.env", s.Name, k)
				}
			}
		}
	})
}

// secretKeys are the keys of onair-secrets, in the base and every overlay.
var secretKeys = []string{"admin-key", "internal-key", "nats-password"}

func TestSecretKeys(t *testing.T) {
	eachRendered(t, func(t *testing.T, o *objects) {
		s := o.secret(generatedName(o, "Secret", "onair-secrets"))
		if s == nil {
			t.Fatal("no Secret onair-secrets")
		}
		if got := sortedKeys(s.Data); !slices.Equal(got, secretKeys) {
			t.Errorf("Secret/%s has keys %v, want %v", s.Name, got, secretKeys)
		}
	})
}

// generatedName is the rendered name (with its hash suffix) of a generated
// ConfigMap or Secret.
func generatedName(o *objects, kind, name string) string {
	for _, r := range o.all {
		if r.kind == kind && strings.HasPrefix(r.meta.Name, name+"-") && !strings.Contains(strings.TrimPrefix(r.meta.Name, name+"-"), "-") {
			return r.meta.Name
		}
	}
	return ""
}

// TestSecretEnvExample checks that secret.env.example lists exactly the keys
// of the base Secret.
func TestSecretEnvExample(t *testing.T) {
	o := render(t, "base")
	want := map[string]bool{}
	for _, s := range o.secrets {
		for k := range s.Data {
			want[k] = true
		}
	}
	f, err := os.Open(filepath.Join("overlays", "production", "secret.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, _ := strings.Cut(line, "=")
		got[k] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("secret.env.example has keys %v, the Secret %v", sortedKeys(got), sortedKeys(want))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestOverlays checks what each overlay is for.
func TestOverlays(t *testing.T) {
	replicas := func(t *testing.T, o *objects, name string) int32 {
		t.Helper()
		for _, w := range o.workloads() {
			if w.name == name {
				return o.expectedPods(w)
			}
		}
		t.Fatalf("no workload %s", name)
		return 0
	}
	authEnv := func(t *testing.T, o *objects, name string) string {
		t.Helper()
		w, ok := o.workload("Deployment", "auth")
		if !ok {
			t.Fatal("no Deployment/auth")
		}
		for _, e := range w.pod.Spec.Containers[0].Env {
			if e.Name == name {
				return e.Value
			}
		}
		return ""
	}
	logLevel := func(o *objects) string {
		for _, cm := range o.configMaps {
			if v, ok := cm.Data["ONAIR_LOG_LEVEL"]; ok {
				return v
			}
		}
		return ""
	}
	maxReplicas := func(o *objects, name string) int32 {
		for _, h := range o.hpas {
			if h.Name == name {
				return h.Spec.MaxReplicas
			}
		}
		return 0
	}

	t.Run("dev", func(t *testing.T) {
		o := render(t, "overlays/dev")
		for _, n := range []string{"auth", "room", "stream", "gateway"} {
			if r := replicas(t, o, n); r != 1 {
				t.Errorf("%s: %d replicas, want 1", n, r)
			}
		}
		if r := replicas(t, o, "etcd"); r != 3 {
			t.Errorf("etcd: %d members, want 3 (small, but a real quorum)", r)
		}
		if r := replicas(t, o, "nats"); r != 3 {
			t.Errorf("nats: %d servers, want 3 (a real cluster, routes as in production)", r)
		}
		if v := authEnv(t, o, "ONAIR_DEBUG_TOKENS"); v != "true" {
			t.Errorf("auth: ONAIR_DEBUG_TOKENS=%q, want true in dev", v)
		}
		if v := logLevel(o); v != "debug" {
			t.Errorf("ONAIR_LOG_LEVEL=%q, want debug", v)
		}
	})
	t.Run("production", func(t *testing.T) {
		o := render(t, "overlays/production")
		dev := render(t, "overlays/dev")
		for _, n := range []string{"auth", "room", "stream", "gateway"} {
			if r := replicas(t, o, n); r < 3 {
				t.Errorf("%s: %d replicas, want 3 or more", n, r)
			}
		}
		for _, n := range []string{"room", "gateway"} {
			if maxReplicas(o, n) <= maxReplicas(dev, n) {
				t.Errorf("HorizontalPodAutoscaler/%s: production maxReplicas is not above dev's", n)
			}
		}
		if r := replicas(t, o, "etcd"); r != 3 {
			t.Errorf("etcd: %d members, want 3", r)
		}
		if r := replicas(t, o, "nats"); r != 3 {
			t.Errorf("nats: %d servers, want 3", r)
		}
		// One etcd member and one NATS server per node.
		for _, n := range []string{"etcd", "nats"} {
			w, _ := o.workload("StatefulSet", n)
			if !requiredAntiAffinity(w) {
				t.Errorf("%s: production needs required pod anti-affinity on kubernetes.io/hostname against its own pods", w)
			}
		}
		if v := authEnv(t, o, "ONAIR_DEBUG_TOKENS"); v != "false" {
			t.Errorf("auth: ONAIR_DEBUG_TOKENS=%q, want an explicit false in production", v)
		}
		if v := logLevel(o); v == "debug" {
			t.Errorf("ONAIR_LOG_LEVEL=%q in production", v)
		}
		// Production gets more of everything than dev.
		for _, w := range o.workloads() {
			dw, ok := dev.workload(w.kind, w.name)
			if !ok {
				continue
			}
			for i, c := range w.pod.Spec.Containers {
				dc := dw.pod.Spec.Containers[i]
				for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					prod, dev := c.Resources.Limits[res], dc.Resources.Limits[res]
					if prod.Cmp(dev) <= 0 {
						t.Errorf("%s: production %s limit is not above dev's", w, res)
					}
				}
			}
		}
	})
}

// TestDockerfile checks the image against the module: the build stage's Go
// is at least go.mod's go directive (the golang images set
// GOTOOLCHAIN=local), and the final stage runs /onair as a numeric non-root
// user, which Kubernetes needs to verify runAsNonRoot.
func TestDockerfile(t *testing.T) {
	df, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	arg := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindSubmatch(df)
	if goLine == nil || arg == nil {
		t.Fatal("no go directive in go.mod or no ARG GO_VERSION= in the Dockerfile")
	}
	if compareVersions(string(arg[1]), string(goLine[1])) < 0 {
		t.Errorf("Dockerfile GO_VERSION %s is older than go.mod's go %s", arg[1], goLine[1])
	}
	text := string(df)
	last := text[strings.LastIndex(text, "\nFROM "):]
	for _, want := range []string{
		"FROM gcr.io/distroless/static-debian12:nonroot",
		`ENTRYPOINT ["/onair"]`,
		"COPY --from=build /onair /onair",
	} {
		if !strings.Contains(last, want) {
			t.Errorf("final stage: no %q", want)
		}
	}
	user := regexp.MustCompile(`(?m)^USER (\d+)(:\d+)?$`).FindStringSubmatch(last)
	if user == nil || user[1] == "0" {
		t.Errorf("final stage: want USER <non-zero uid> (numeric)")
	}
	if !strings.Contains(text, `CGO_ENABLED=0`) || !strings.Contains(text, `go build -trimpath -ldflags="-s -w" -o /onair ./cmd/onair`) {
		t.Errorf("build stage: want a static CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" -o /onair ./cmd/onair")
	}
}

// compareVersions compares dotted numeric versions (1.26, 1.26.8).
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// requiredAntiAffinity reports whether w's pods refuse to share a node.
func requiredAntiAffinity(w workload) bool {
	a := w.pod.Spec.Affinity
	if a == nil || a.PodAntiAffinity == nil {
		return false
	}
	for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
		if err == nil && !sel.Empty() && term.TopologyKey == "kubernetes.io/hostname" && sel.Matches(labels.Set(w.pod.Labels)) {
			return true
		}
	}
	return false
}

// natsWorkload is the StatefulSet running `onair nats`, and its container.
func natsWorkload(t *testing.T, o *objects) (workload, *corev1.Container) {
	t.Helper()
	for _, w := range o.workloads() {
		for i := range w.pod.Spec.Containers {
			c := &w.pod.Spec.Containers[i]
			if repo, _ := imageRepo(c.Image); repo == onairImage && len(c.Args) > 0 && c.Args[0] == "nats" {
				if w.kind != "StatefulSet" {
					t.Fatalf("nats runs in a %s, want a StatefulSet (stable names for the routes)", w)
				}
				return w, c
			}
		}
	}
	t.Fatal("no container runs `onair nats`")
	return workload{}, nil
}

// envSecret is the Secret and key an environment variable of c comes from.
func envSecret(c *corev1.Container, name string) (secret, key string) {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key
		}
	}
	return "", ""
}

// envValue is the literal value of an environment variable of c.
func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom == nil {
			return e.Value, true
		}
	}
	return "", false
}

// TestNATSCluster checks the NATS that carries room messages: three
// servers of the onair image, each routed to every member by its stable
// DNS name under the headless Service; a PDB that keeps two; spread over
// nodes; and the room replicas given every server (or the client Service)
// on the client port, the servers' user, and the password from the same
// Secret key, never on a command line. (TLS: TestTLSWiring.) Needs no binary (flags_test.go
// checks the flags against `onair nats -h`).
func TestNATSCluster(t *testing.T) {
	eachRendered(t, func(t *testing.T, o *objects) {
		w, c := natsWorkload(t, o)
		sts := o.statefulSets[slices.IndexFunc(o.statefulSets, func(s *appsv1.StatefulSet) bool { return s.Name == w.name })]
		if w.replicas == nil || *w.replicas != 3 {
			t.Fatalf("%s: %v replicas, want 3 servers (one lost, messages keep flowing)", w, w.replicas)
		}
		if sts.Spec.PodManagementPolicy != "Parallel" {
			t.Errorf("%s: podManagementPolicy should be Parallel: servers need no order", w)
		}
		if len(c.Command) > 0 {
			t.Errorf("%s: command %v overrides the image's ENTRYPOINT", w, c.Command)
		}
		args := flagArgs(c.Args)
		if fieldRefEnv(c, "POD_NAME") != "metadata.name" || fieldRefEnv(c, "POD_NAMESPACE") != "metadata.namespace" {
			t.Errorf("%s: POD_NAME and POD_NAMESPACE must come from the downward API", w)
		}
		if args["name"] != "$(POD_NAME)" {
			t.Errorf("%s: --name=%q, want $(POD_NAME)", w, args["name"])
		}
		if args["cluster-name"] == "" {
			t.Errorf("%s: no --cluster-name", w)
		}
		port := func(flag string) int32 {
			_, p, err := net.SplitHostPort(args[flag])
			n, perr := strconv.ParseInt(p, 10, 32)
			if err != nil || perr != nil {
				t.Fatalf("%s: --%s=%q is not host:port", w, flag, args[flag])
			}
			if _, ok := containerPort(c, intstr.FromInt32(int32(n))); !ok {
				t.Errorf("%s: --%s port %d is not a container port", w, flag, n)
			}
			return int32(n)
		}
		clientPort, routePort := port("client-addr"), port("cluster-addr")

		headless := o.service(sts.Spec.ServiceName)
		if headless == nil {
			t.Fatalf("%s: serviceName %q is not rendered", w, sts.Spec.ServiceName)
		}
		if headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
			t.Errorf("Service/%s: the route Service must be headless and publish not-ready addresses", headless.Name)
		}
		if ws := o.selecting(labels.SelectorFromSet(headless.Spec.Selector)); len(ws) != 1 || ws[0].String() != w.String() {
			t.Errorf("Service/%s does not select %s", headless.Name, w)
		}

		// --routes: every member (itself too; a server ignores the route
		// to itself), by its stable name, on the route port.
		var want []string
		for i := range *w.replicas {
			want = append(want, fmt.Sprintf("nats-route://%s-%d.%s.$(POD_NAMESPACE).svc:%d", w.name, i, headless.Name, routePort))
		}
		if got := args["routes"]; got != strings.Join(want, ",") {
			t.Errorf("%s: --routes=%q\nwant %q (StatefulSet name, replicas, serviceName, --cluster-addr port)", w, got, strings.Join(want, ","))
		}

		// The client Service leads to the client port.
		client := o.service("nats")
		if client == nil {
			t.Fatal("no client Service nats")
		}
		if client.Spec.ClusterIP == corev1.ClusterIPNone {
			t.Errorf("Service/nats: the client Service must not be headless")
		}
		if ws := o.selecting(labels.SelectorFromSet(client.Spec.Selector)); len(ws) != 1 || ws[0].String() != w.String() {
			t.Errorf("Service/nats does not select %s", w)
		}
		servicePort := func(s *corev1.Service, n int32) bool {
			for _, p := range s.Spec.Ports {
				if cp, ok := containerPort(c, p.TargetPort); p.Port == n && ok && cp.ContainerPort == clientPort {
					return true
				}
			}
			return false
		}
		if !servicePort(client, clientPort) {
			t.Errorf("Service/nats: no port %d leading to the client port", clientPort)
		}

		// Two of three servers through drains; spread over nodes.
		covered := false
		for _, p := range o.pdbs {
			sel, _ := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if ws := o.selecting(sel); len(ws) == 1 && ws[0].String() == w.String() {
				covered = true
				if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntVal < *w.replicas-1 {
					t.Errorf("PodDisruptionBudget/%s: minAvailable must keep %d servers", p.Name, *w.replicas-1)
				}
			}
		}
		if !covered {
			t.Errorf("%s: no PodDisruptionBudget", w)
		}
		if a := w.pod.Spec.Affinity; a == nil || a.PodAntiAffinity == nil ||
			(len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 && !requiredAntiAffinity(w)) {
			t.Errorf("%s: no pod anti-affinity: the servers may all land on one node", w)
		}

		// Secrets in the environment, never on a command line.
		for _, ct := range o.workloads() {
			for _, cc := range ct.pod.Spec.Containers {
				for _, a := range cc.Args {
					if strings.HasPrefix(a, "--nats-password") || strings.HasPrefix(a, "--nats-token") {
						t.Errorf("%s container %s: %q: NATS secrets belong in the environment", ct, cc.Name, a)
					}
				}
			}
		}
		secret, key := envSecret(c, "ONAIR_NATS_PASSWORD")
		if secret == "" || secret != generatedName(o, "Secret", "onair-secrets") || key != "nats-password" {
			t.Errorf("%s: ONAIR_NATS_PASSWORD comes from Secret %q key %q, want onair-secrets nats-password", w, secret, key)
		}

		// The room replicas: every server (or the client Service), the same
		// user and password.
		room, ok := o.workload("Deployment", "room")
		if !ok {
			t.Fatal("no Deployment/room")
		}
		rc := &room.pod.Spec.Containers[0]
		if s, k := envSecret(rc, "ONAIR_NATS_PASSWORD"); s != secret || k != key {
			t.Errorf("%s: ONAIR_NATS_PASSWORD comes from Secret %q key %q, want the servers' %q %q", room, s, k, secret, key)
		}
		if u := flagArgs(rc.Args)["nats-user"]; u == "" || u != args["nats-user"] {
			t.Errorf("%s: --nats-user=%q, the servers' is %q", room, u, args["nats-user"])
		}
		urls, ok := envValue(rc, "ONAIR_NATS_URL")
		if !ok || urls == "" {
			t.Fatalf("%s: no literal ONAIR_NATS_URL", room)
		}
		// A name may be qualified with the namespace (TLS: the name the
		// servers' certificate holds).
		ns := ""
		for _, d := range o.deployments {
			if d.Name == room.name {
				ns = d.Namespace
			}
		}
		members := map[string]bool{}
		viaService := false
		for _, raw := range strings.Split(urls, ",") {
			u, err := url.Parse(strings.TrimSpace(raw))
			if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Port() != strconv.Itoa(int(clientPort)) || (u.Path != "" && u.Path != "/") || u.User != nil {
				t.Errorf("%s: NATS URL %q: want nats://<host>:%d or tls://<host>:%d without credentials", room, raw, clientPort, clientPort)
				continue
			}
			host := strings.TrimSuffix(strings.TrimSuffix(u.Hostname(), ".svc"), ".$(POD_NAMESPACE)")
			if ns != "" {
				host = strings.TrimSuffix(host, "."+ns)
			}
			if host == client.Name {
				viaService = true
				continue
			}
			pod, svc, _ := strings.Cut(host, ".")
			i, err := strconv.Atoi(strings.TrimPrefix(pod, w.name+"-"))
			if svc != headless.Name || !strings.HasPrefix(pod, w.name+"-") || err != nil || i < 0 || i >= int(*w.replicas) {
				t.Errorf("%s: NATS URL %q is neither the client Service nor a member <%s-N>.%s", room, raw, w.name, headless.Name)
				continue
			}
			members[pod] = true
		}
		if !viaService && len(members) != int(*w.replicas) {
			t.Errorf("%s: ONAIR_NATS_URL lists %d of the %d servers: %v", room, len(members), *w.replicas, sortedKeys(members))
		}
	})
}
