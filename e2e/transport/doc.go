// Package transport runs OnAir's roles as real processes with transport
// security on, as the production overlay runs them: a CA made by the test,
// etcd serving clients over TLS with client certificates, every gRPC and
// HTTP listener over TLS, a cluster of `onair nats` servers taking TLS
// clients with certificates and routing to each other over mutual TLS, and
// the certificates renewed under the running processes.
package transport
