// Package transport runs OnAir's roles as real processes with transport
// security on, as the production overlay runs them: a CA made by the test,
// etcd serving clients over TLS with client certificates, every gRPC and
// HTTP listener over TLS, and the certificates renewed under the running
// processes.
package transport
