package main

import "syscall"

// childSysProcAttr puts a cluster child in its own process group, so a
// terminal's Ctrl-C reaches only `onair cluster`, which stops the children
// in order; the children die with the cluster process if it is killed.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
