package sqlite

import (
	"context"
	"database/sql/driver"
)

// QueryHook sees every statement a connection runs, with its arguments,
// before it runs: River's statements on the write pool as well as the
// store's own. Tests use it to EXPLAIN every query the store issues and to
// count queries per request.
type QueryHook func(query string, args []driver.NamedValue)

// Option changes how Open sets the database up.
type Option func(*options)

type options struct {
	hook    QueryHook
	noCache bool
	noPool  bool
}

// WithQueryHook calls hook for every statement run on either pool.
func WithQueryHook(hook QueryHook) Option { return func(o *options) { o.hook = hook } }

// WithoutStatementCache prepares every statement afresh each time it runs,
// as the driver does by itself: for measuring what the cache saves.
func WithoutStatementCache() Option { return func(o *options) { o.noCache = true } }

// WithoutPool keeps no idle connection: every statement or transaction
// opens a new connection and closes it afterwards, the no-pool
// anti-pattern (shop --antipattern no-pool).
func WithoutPool() Option { return func(o *options) { o.noPool = true } }

// hookConnector wraps the driver's connector: each connection keeps its
// statements prepared (see hookConn) and reports them to hook, if set.
type hookConnector struct {
	driver.Connector
	hook    QueryHook
	noCache bool
}

func (c hookConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	hook := c.hook
	if hook == nil {
		hook = func(string, []driver.NamedValue) {}
	}
	return &hookConn{conn: conn, hook: hook, stmts: map[string]*cachedStmt{}, noCache: c.noCache}, nil
}

// maxCachedStmts bounds each connection's prepared statements; the store
// and River together issue about sixty distinct ones.
const maxCachedStmts = 256

// cachedStmt is a statement prepared once on its connection. busy: a result
// set of it is still open, so a second use on the same connection (a query
// inside a row loop) prepares a fresh one instead of resetting this one.
type cachedStmt struct {
	stmt driver.Stmt
	busy bool
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

// hookConn keeps every statement run through it prepared, by its text, for
// the connection's life: SQLite parses and plans a statement when it is
// prepared, which costs more than running a small indexed one, and the
// driver would otherwise prepare and finalize it on every call. A
// connection is used by one goroutine at a time (database/sql), so the
// cache needs no lock.
type hookConn struct {
	conn    driver.Conn
	hook    QueryHook
	stmts   map[string]*cachedStmt
	noCache bool
}

// cached returns the connection's prepared statement for query, preparing
// it on first use; nil when it is in use or cannot be cached.
func (c *hookConn) cached(ctx context.Context, query string) *cachedStmt {
	if cs, ok := c.stmts[query]; ok {
		if cs.busy {
			return nil
		}
		return cs
	}
	if c.noCache || len(c.stmts) >= maxCachedStmts {
		return nil
	}
	st, err := c.inner().PrepareContext(ctx, query)
	if err != nil {
		return nil // the uncached path reports the error
	}
	cs := &cachedStmt{stmt: st}
	c.stmts[query] = cs
	return cs
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

func (c *hookConn) Close() error {
	for _, cs := range c.stmts {
		cs.stmt.Close() //nolint:errcheck // closing the connection frees them anyway
	}
	return c.conn.Close()
}

func (c *hookConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *hookConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.inner().BeginTx(ctx, opts)
}

func (c *hookConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	c.hook(query, args)
	if cs := c.cached(ctx, query); cs != nil {
		cs.busy = true
		defer func() { cs.busy = false }()
		return cs.stmt.(driver.StmtExecContext).ExecContext(ctx, args)
	}
	return c.inner().ExecContext(ctx, query, args)
}

func (c *hookConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.hook(query, args)
	if cs := c.cached(ctx, query); cs != nil {
		cs.busy = true
		rows, err := cs.stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
		if err != nil {
			cs.busy = false
			return nil, err
		}
		return &releasingRows{Rows: rows, cs: cs}, nil
	}
	return c.inner().QueryContext(ctx, query, args)
}

// releasingRows frees its cached statement for reuse when closed.
type releasingRows struct {
	driver.Rows
	cs *cachedStmt
}

func (r *releasingRows) Close() error {
	err := r.Rows.Close()
	r.cs.busy = false
	return err
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
