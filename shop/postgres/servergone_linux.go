package postgres

import (
	"fmt"
	"net"
	"syscall"
)

// peekIdle looks at an idle connection's socket without reading from it
// or waiting (recv with MSG_PEEK|MSG_DONTWAIT: one system call), even while
// another goroutine waits in a read on it.
func peekIdle(c net.Conn) (idleState, error) {
	tls := false
	if t, ok := c.(interface{ NetConn() net.Conn }); ok {
		c, tls = t.NetConn(), true
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return idleQuiet, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return idleQuiet, nil
	}
	var buf [256]byte
	var n int
	var recvErr error
	// Control, not Read: Read takes the socket's read lock, which pgx's
	// background reader holds while it waits in a read of its own (it is
	// started when a write is slow, and stays until the server sends
	// something), so Read waited here forever, holding up the Acquire.
	if err := raw.Control(func(fd uintptr) {
		n, _, recvErr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}); err != nil {
		return idleQuiet, nil // closed here: pgxpool finds out itself
	}
	switch {
	case recvErr == syscall.EAGAIN || recvErr == syscall.EINTR:
		return idleQuiet, nil
	case recvErr != nil:
		return idleGone, fmt.Errorf("an idle connection: %w", recvErr)
	case n == 0:
		return idleGone, errIdleEOF
	}
	if code := shutdownCode(buf[:n]); !tls && serverGoneCodes[code] {
		return idleGone, fmt.Errorf("an idle connection was told %s (the server shut down or ended it)", code)
	}
	return idleNoise, nil
}
