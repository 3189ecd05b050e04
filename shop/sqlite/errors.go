package sqlite

import (
	"errors"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/perfscale/perfscale/shop"
)

// errStorageUnavailable is the public face of a database file that cannot
// take a write (the disk is full or failing): the HTTP adapter answers 503
// with Retry-After, and the failed transaction changed nothing.
var errStorageUnavailable = shop.Errorf(shop.EUNAVAILABLE, "the database cannot store anything at the moment; retry shortly")

// unavailable maps SQLite's "database or disk is full" and its I/O errors
// to shop.EUNAVAILABLE, keeping the cause in the chain for the log; other
// errors pass unchanged. A full disk is the service's trouble, not a bug
// to answer with 500, and it passes when space is freed (the fault
// matrix's full tmpfs answered 123 requests with 500 before this).
func unavailable(err error) error {
	var mapped *unavailableError
	if err == nil || errors.As(err, &mapped) {
		return err
	}
	var sqliteErr *msqlite.Error
	if !errors.As(err, &sqliteErr) {
		return err
	}
	switch sqliteErr.Code() & 0xff { // the primary code of an extended one
	case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR:
		return &unavailableError{cause: err}
	}
	return err
}

type unavailableError struct{ cause error }

func (e *unavailableError) Error() string { return "database unavailable: " + e.cause.Error() }

// Unwrap exposes both the domain code and the cause.
func (e *unavailableError) Unwrap() []error { return []error{errStorageUnavailable, e.cause} }
