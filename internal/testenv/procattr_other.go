//go:build !linux

package testenv

import "syscall"

// sysProcAttr: only Linux can tie a child's life to its parent; elsewhere
// t.Cleanup is the only guard.
func sysProcAttr() *syscall.SysProcAttr { return nil }
