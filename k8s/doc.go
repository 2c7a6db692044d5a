// Package k8s holds OnAir's Kubernetes manifests: a kustomize base under
// base/ and the overlays under overlays/ (dev, production).
//
// It has no code of its own. Its tests render the base and every overlay
// with the kustomize Go API, decode every object strictly into its typed
// Kubernetes API struct, and check that the manifests agree with each other
// (probe ports, Service ports, etcd bootstrap, secrets) and with the onair
// binary (roles, flags and their ONAIR_* environment variables), so
// `go test ./k8s/` needs neither kubectl nor kustomize. See README.md.
package k8s
