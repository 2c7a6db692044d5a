// Package web tests the browser SDK (sdk/web) and the web console in a real
// headless Chromium against an in-process OnAir (etcd, every role, the
// gateway), all inside a network namespace that has nothing but loopback.
// See web_test.go for how it runs.
package web
