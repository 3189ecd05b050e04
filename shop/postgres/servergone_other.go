//go:build !linux

package postgres

import "net"

// peekIdle cannot look at a socket here: a broken connection is found
// when a statement fails on it (goneTracer).
func peekIdle(net.Conn) (idleState, error) { return idleQuiet, nil }
