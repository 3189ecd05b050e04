package sqlite

import (
	"context"
	"database/sql/driver"
)

// QueryHook sees every statement a connection runs, with its arguments,
// before it runs: River's statements on the write pool as well as the
// store's own. Tests use it to EXPLAIN every query the store issues and to
// count queries per request; it costs nothing when not set.
type QueryHook func(query string, args []driver.NamedValue)

// Option changes how Open sets the database up.
type Option func(*options)

type options struct{ hook QueryHook }

// WithQueryHook calls hook for every statement run on either pool.
func WithQueryHook(hook QueryHook) Option { return func(o *options) { o.hook = hook } }

// hookConnector wraps the driver's connector so each connection reports its
// statements to hook.
type hookConnector struct {
	driver.Connector
	hook QueryHook
}

func (c hookConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &hookConn{conn: conn, hook: c.hook}, nil
}

// sqliteConn is what modernc.org/sqlite's connections implement; the
// wrapper implements the same, so database/sql takes the same paths with or
// without the hook.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.SessionResetter
	driver.Validator
	driver.Pinger
}

type hookConn struct {
	conn driver.Conn
	hook QueryHook
}

func (c *hookConn) inner() sqliteConn { return c.conn.(sqliteConn) }

func (c *hookConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *hookConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := c.inner().PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return &hookStmt{Stmt: st, query: query, hook: c.hook}, nil
}

func (c *hookConn) Close() error { return c.conn.Close() }

func (c *hookConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *hookConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.inner().BeginTx(ctx, opts)
}

func (c *hookConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	c.hook(query, args)
	return c.inner().ExecContext(ctx, query, args)
}

func (c *hookConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.hook(query, args)
	return c.inner().QueryContext(ctx, query, args)
}

func (c *hookConn) ResetSession(ctx context.Context) error { return c.inner().ResetSession(ctx) }
func (c *hookConn) IsValid() bool                          { return c.inner().IsValid() }
func (c *hookConn) Ping(ctx context.Context) error         { return c.inner().Ping(ctx) }

// hookStmt reports a prepared statement each time it runs.
type hookStmt struct {
	driver.Stmt
	query string
	hook  QueryHook
}

func (s *hookStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.hook(s.query, args)
	return s.Stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}

func (s *hookStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.hook(s.query, args)
	return s.Stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
}
