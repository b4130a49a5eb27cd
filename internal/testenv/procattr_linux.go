package testenv

import "syscall"

// sysProcAttr makes the kernel kill a server when the test binary dies,
// so a crashed or killed `go test` leaves no influxd or mosquitto behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
