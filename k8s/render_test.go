package k8s

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomizations are the directories the tests render, relative to k8s/.
var kustomizations = []string{"base", "overlays/dev", "overlays/production"}

// testSecretEnv stands in for overlays/production/secret.env, which is never
// committed.
var testSecretEnv = map[string]string{
	"internal-key":  "test-internal-key-0123456789abcdef",
	"admin-key":     "test-admin-key-0123456789abcdef",
	"nats-password": "test-nats-password-0123456789abcdef",
}

// workDir is a copy of base/ and overlays/ with a test secret.env, made by
// TestMain; the onair binary is built into it too.
var workDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "onair-k8s-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	err = prepareWorkDir(dir)
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "preparing the manifests:", err)
	} else {
		workDir = dir
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func prepareWorkDir(dir string) error {
	for _, d := range []string{"base", "overlays"} {
		if err := os.CopyFS(filepath.Join(dir, d), os.DirFS(d)); err != nil {
			return err
		}
	}
	// Sorted, so the generated Secret's name hash is stable.
	keys := make([]string, 0, len(testSecretEnv))
	for k := range testSecretEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var env []byte
	for _, k := range keys {
		env = fmt.Appendf(env, "%s=%s\n", k, testSecretEnv[k])
	}
	return os.WriteFile(filepath.Join(dir, "overlays", "production", "secret.env"), env, 0o600)
}

// objects is one rendered kustomization, every object decoded into its
// typed API struct.
type objects struct {
	dir          string
	namespaces   []*corev1.Namespace
	configMaps   []*corev1.ConfigMap
	secrets      []*corev1.Secret
	services     []*corev1.Service
	deployments  []*appsv1.Deployment
	statefulSets []*appsv1.StatefulSet
	daemonSets   []*appsv1.DaemonSet
	pdbs         []*policyv1.PodDisruptionBudget
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	ingresses    []*networkingv1.Ingress
	netpols      []*networkingv1.NetworkPolicy
	// all holds every object's metadata, in rendering order.
	all []objectRef
}

type objectRef struct {
	apiVersion, kind string
	meta             *metav1.ObjectMeta
}

func (r objectRef) String() string { return r.kind + "/" + r.meta.Name }

// decoders maps apiVersion + kind to a strict decoder into the typed struct.
// A kind that is not here fails the tests: add its decoder (and think about
// which checks it needs) before adding it to the manifests.
var decoders = map[string]func(o *objects, y []byte) (*metav1.ObjectMeta, error){
	"v1/Namespace":                           decoder(func(o *objects) *[]*corev1.Namespace { return &o.namespaces }),
	"v1/ConfigMap":                           decoder(func(o *objects) *[]*corev1.ConfigMap { return &o.configMaps }),
	"v1/Secret":                              decoder(func(o *objects) *[]*corev1.Secret { return &o.secrets }),
	"v1/Service":                             decoder(func(o *objects) *[]*corev1.Service { return &o.services }),
	"apps/v1/Deployment":                     decoder(func(o *objects) *[]*appsv1.Deployment { return &o.deployments }),
	"apps/v1/StatefulSet":                    decoder(func(o *objects) *[]*appsv1.StatefulSet { return &o.statefulSets }),
	"apps/v1/DaemonSet":                      decoder(func(o *objects) *[]*appsv1.DaemonSet { return &o.daemonSets }),
	"policy/v1/PodDisruptionBudget":          decoder(func(o *objects) *[]*policyv1.PodDisruptionBudget { return &o.pdbs }),
	"autoscaling/v2/HorizontalPodAutoscaler": decoder(func(o *objects) *[]*autoscalingv2.HorizontalPodAutoscaler { return &o.hpas }),
	"networking.k8s.io/v1/Ingress":           decoder(func(o *objects) *[]*networkingv1.Ingress { return &o.ingresses }),
	"networking.k8s.io/v1/NetworkPolicy":     decoder(func(o *objects) *[]*networkingv1.NetworkPolicy { return &o.netpols }),
}

func decoder[T any, PT interface {
	*T
	GetObjectMeta() metav1.Object
}](list func(*objects) *[]PT) func(*objects, []byte) (*metav1.ObjectMeta, error) {
	return func(o *objects, y []byte) (*metav1.ObjectMeta, error) {
		v := PT(new(T))
		// Unknown fields and duplicate keys are errors.
		if err := yaml.UnmarshalStrict(y, v); err != nil {
			return nil, err
		}
		l := list(o)
		*l = append(*l, v)
		return v.GetObjectMeta().(*metav1.ObjectMeta), nil
	}
}

var (
	renderMu    sync.Mutex
	renderCache = map[string]*objects{}
	renderErr   = map[string]error{}
)

// render builds the kustomization in dir (relative to k8s/), once per test
// binary, and decodes it.
func render(t *testing.T, dir string) *objects {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if o, ok := renderCache[dir]; ok {
		return o
	}
	if err, ok := renderErr[dir]; ok {
		t.Fatalf("%s: %v", dir, err)
	}
	o, err := renderDir(dir)
	if err != nil {
		renderErr[dir] = err
		t.Fatalf("%s: %v", dir, err)
	}
	renderCache[dir] = o
	return o
}

func renderDir(dir string) (*objects, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(workDir, dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize build: %w", err)
	}
	o := &objects{dir: dir}
	for _, r := range m.Resources() {
		apiVersion, kind, name := r.GetApiVersion(), r.GetKind(), r.GetName()
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", kind, name, err)
		}
		dec, ok := decoders[apiVersion+"/"+kind]
		if !ok {
			return nil, fmt.Errorf("%s/%s: no typed decoder for %s %s", kind, name, apiVersion, kind)
		}
		meta, err := dec(o, y)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: strict decoding into the %s struct: %w", kind, name, kind, err)
		}
		o.all = append(o.all, objectRef{apiVersion: apiVersion, kind: kind, meta: meta})
	}
	return o, nil
}

// eachRendered runs f as a subtest for the base and every overlay.
func eachRendered(t *testing.T, f func(t *testing.T, o *objects)) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) { f(t, render(t, dir)) })
	}
}

func TestStrictDecoderCatchesUnknownFields(t *testing.T) {
	var o objects
	bad := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - name: x\n          readinesProbe: {}\n")
	if _, err := decoders["apps/v1/Deployment"](&o, bad); err == nil {
		t.Fatal("a misspelt field (readinesProbe) was accepted")
	}
	dup := []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: '1', a: '2'}\n")
	if _, err := decoders["v1/ConfigMap"](&o, dup); err == nil {
		t.Fatal("a duplicate key was accepted")
	}
}
