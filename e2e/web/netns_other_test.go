//go:build !linux

package web

import "errors"

var errNoNetns = errors.New("network namespaces need Linux")

func inNetns() (int, error) { return 1, errNoNetns }

func loopbackUp() error { return errNoNetns }
