package postgres

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A server that went away (shut down, crashed and restarted, or each of
// its backends terminated) breaks every connection a pool holds to it,
// and pgxpool finds that out one connection at a time: it pings only a
// connection idle for over a second, so after a restart each broken
// connection was one customer's 503. serverWatch is the one place a pool
// learns that its server went away, and drops every connection it has
// (pgxpool.Pool.Reset) once:
//   - before a connection is handed out (PrepareConn), its socket is
//     looked at without reading or waiting (peekIdle): an idle connection
//     has nothing to say, so the end of the stream, a reset, or the
//     server's FATAL shutdown message there means it went away. Nothing
//     was sent on that connection, so pgxpool hands out a fresh one
//     instead and the statement runs as if nothing had happened;
//   - a statement that fails because the server went away while it ran
//     (serverGone) resets the pool as well; that statement is not retried
//     (it may have done its work), and is the caller's 503 as before.
//
// A reset is debounced by generation, not by time: each connection
// remembers the generation it was made in, and only a connection of the
// current generation resets the pool, so the many broken connections of
// one restart reset it once, and a connection made after that reset can
// reset it again if the server goes away again.
type serverWatch struct {
	at         string
	pool       atomic.Pointer[pgxpool.Pool]
	generation atomic.Int64
	onReset    func(at string, cause error)
}

// generationKey keys a connection's generation in its CustomData.
const generationKey = "perfscale.serverWatch.generation"

// watchServer installs the watch on a pool's configuration; the caller
// hands it the pool once made (watch.pool.Store).
func watchServer(cfg *pgxpool.Config, at string, onReset func(at string, cause error)) *serverWatch {
	w := &serverWatch{at: at, onReset: onReset}
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		c.PgConn().CustomData()[generationKey] = w.generation.Load()
		return nil
	}
	cfg.PrepareConn = w.prepare
	if inner := cfg.ConnConfig.Tracer; inner != nil {
		cfg.ConnConfig.Tracer = multitracer.New(inner, goneTracer{w})
	} else {
		cfg.ConnConfig.Tracer = goneTracer{w}
	}
	return w
}

// prepare checks an idle connection before it is handed out: false drops
// it and pgxpool tries another (after a reset, a new one).
func (w *serverWatch) prepare(_ context.Context, c *pgx.Conn) (bool, error) {
	switch state, cause := peekIdle(c.PgConn().Conn()); state {
	case idleGone:
		w.gone(c, cause)
		return false, nil
	case idleNoise:
		return false, nil // something unexpected is waiting: not this connection
	}
	return true, nil
}

// gone resets the pool, unless a reset since c was made dropped it already.
func (w *serverWatch) gone(c *pgx.Conn, cause error) {
	made, _ := c.PgConn().CustomData()[generationKey].(int64)
	if !w.generation.CompareAndSwap(made, made+1) {
		return
	}
	if p := w.pool.Load(); p != nil {
		p.Reset()
	}
	if w.onReset != nil {
		w.onReset(w.at, cause)
	}
}

// serverGoneCodes are the SQLSTATEs of a server going away: admin_shutdown
// (a shutdown or pg_terminate_backend), crash_shutdown (another backend
// crashed) and cannot_connect_now (starting up or shutting down).
var serverGoneCodes = map[string]bool{"57P01": true, "57P02": true, "57P03": true}

// serverGone tells a failed statement's error that means the server went
// away from an ordinary one. A timeout or a cancelled statement is not:
// a slow server or a request out of time; dropping every connection then
// would add reconnections to a database already behind.
func serverGone(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return serverGoneCodes[pgErr.Code]
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

// goneTracer sees each statement's and batch's outcome.
type goneTracer struct{ w *serverWatch }

func (goneTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (t goneTracer) TraceQueryEnd(_ context.Context, c *pgx.Conn, d pgx.TraceQueryEndData) {
	if serverGone(d.Err) {
		t.w.gone(c, d.Err)
	}
}

func (goneTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (goneTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t goneTracer) TraceBatchEnd(_ context.Context, c *pgx.Conn, d pgx.TraceBatchEndData) {
	if serverGone(d.Err) {
		t.w.gone(c, d.Err)
	}
}

// idleState is what an idle connection's socket holds.
type idleState int

const (
	idleQuiet idleState = iota // nothing: as it should be, or it could not be looked at
	idleGone                   // end of stream, reset, or the server's shutdown message
	idleNoise                  // something else
)

// errIdleEOF is the end of an idle connection's stream.
var errIdleEOF = errors.New("the server closed an idle connection")

// shutdownCode is the SQLSTATE of a FATAL ErrorResponse ('E', its length,
// then fields each a type byte and a C string, ended by a zero byte) at
// the start of msg, or "".
func shutdownCode(msg []byte) string {
	if len(msg) < 5 || msg[0] != 'E' {
		return ""
	}
	f := msg[5:]
	for len(f) > 1 && f[0] != 0 {
		end := bytes.IndexByte(f[1:], 0)
		if end < 0 {
			return ""
		}
		if f[0] == 'C' {
			return string(f[1 : 1+end])
		}
		f = f[2+end:]
	}
	return ""
}
