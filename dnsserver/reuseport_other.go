//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package dnsserver

import "syscall"

// reusePortSupported is false here: the server binds one UDP socket and one
// TCP listener whatever Config.Sockets says, and logs it.
const reusePortSupported = false

func reusePort(_, _ string, _ syscall.RawConn) error { return nil }
