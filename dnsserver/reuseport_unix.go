//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package dnsserver

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePortSupported reports whether several sockets can share one address
// with SO_REUSEPORT, the kernel spreading datagrams and connections over
// them.
const reusePortSupported = true

// reusePort is a net.ListenConfig Control function that sets SO_REUSEPORT.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
