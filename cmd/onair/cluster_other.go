//go:build !linux

package main

import "syscall"

// childSysProcAttr keeps cluster children in the cluster's process group
// where there is no parent-death signal, so they are not left behind.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
