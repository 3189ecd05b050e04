package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/perfscale/perfscale/shop"
)

// errUnavailable is the public face of a database that cannot be reached:
// the HTTP adapter answers 503 with Retry-After, and nothing was changed
// that the client was told about.
var errUnavailable = shop.Errorf(shop.EUNAVAILABLE, "the database is not reachable at the moment; retry shortly")

// unavailable maps a failure to reach PostgreSQL (refused or broken
// connection, server shutting down, too many connections) to
// shop.EUNAVAILABLE, keeping the cause in the chain for the log. It is the
// one place the store decides what "the database is down" means; other
// errors pass unchanged.
func unavailable(err error) error {
	var mapped *unavailableError
	if err == nil || errors.As(err, &mapped) || errors.Is(err, shop.ErrBucketMoving) {
		return err // nothing to map, or mapped already deeper in the chain
	}
	if isFenced(err) {
		return fmt.Errorf("%w (%w)", shop.ErrBucketMoving, err)
	}
	if !isUnavailable(err) {
		return err
	}
	return &unavailableError{cause: err}
}

type unavailableError struct{ cause error }

func (e *unavailableError) Error() string { return "database unavailable: " + e.cause.Error() }

// Unwrap exposes both the domain code and the cause.
func (e *unavailableError) Unwrap() []error { return []error{errUnavailable, e.cause} }

// fencedCode is the SQLSTATE of a write to a bucket this shard does not
// take writes for (migration 00016's bucket_fence_check).
const fencedCode = "PS001"

func isFenced(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == fencedCode
}

func isUnavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the request's own deadline, not the database's health
	}
	// Failing to connect at all, whatever the server said (down, not
	// accepting connections, too many clients), is the database being
	// unavailable.
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"57": // operator intervention: admin shutdown, terminated, cannot connect now
			return pgErr.Code != "57014" // 57014 is a cancelled statement (statement_timeout)
		case "53": // insufficient resources: too many connections
			return true
		}
		return false
	}
	// A connection reset in the middle of an answer (a batch's, say) ends
	// in an unexpected EOF: the server went away mid-way, not a bug here
	// (Toxiproxy's reset_peer gave 500s for it: TestResetConnectionsAre503).
	var netErr net.Error
	return errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) || isClosedConn(err)
}

func isClosedConn(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch e.Error() {
		case "conn closed", "closed pool":
			return true
		}
	}
	return false
}
