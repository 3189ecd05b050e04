package pgtest

import (
	"context"
	"net"
	"sync"
)

// RoundTrips counts a pool's round trips to the server: each time a
// connection reads after it wrote. Give its Dial to pgx.ConnConfig's
// DialFunc.
type RoundTrips struct {
	mu    sync.Mutex
	n     int
	wrote map[net.Conn]bool
}

// Dial dials as pgx does and counts the connection's round trips.
func (r *RoundTrips) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, rt: r}, nil
}

// Count is the round trips so far.
func (r *RoundTrips) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

type countedConn struct {
	net.Conn
	rt *RoundTrips
}

func (c *countedConn) Write(p []byte) (int, error) {
	c.rt.mu.Lock()
	if c.rt.wrote == nil {
		c.rt.wrote = map[net.Conn]bool{}
	}
	c.rt.wrote[c] = true
	c.rt.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countedConn) Read(p []byte) (int, error) {
	c.rt.mu.Lock()
	if c.rt.wrote[c] {
		c.rt.wrote[c] = false
		c.rt.n++
	}
	c.rt.mu.Unlock()
	return c.Conn.Read(p)
}
