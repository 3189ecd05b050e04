package shop

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to one HTTP status in one place (the HTTP adapter);
// storage adapters return them so callers need not know which store ran.
const (
	EINVALID       = "invalid"       // the request is malformed or out of range
	EUNPROCESSABLE = "unprocessable" // well-formed, but cannot be applied as given
	EUNAUTHORIZED  = "unauthorized"  // missing or unknown credentials
	EFORBIDDEN     = "forbidden"     // known credentials, not allowed
	ENOTFOUND      = "not_found"     // no such thing (or not yours)
	ECONFLICT      = "conflict"      // the current state does not allow it
	EUNAVAILABLE   = "unavailable"   // a dependency is down or overloaded
	EINTERNAL      = "internal"      // a bug or an unexpected failure
)

// Error is a domain error whose Message is safe to show to a client. Causes
// that must not leak (SQL, file paths) are wrapped with fmt.Errorf instead and
// surface as EINTERNAL.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns a domain error with a formatted public message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first domain error in err's chain,
// EINTERNAL for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var s *OutOfStockError
	var p *PriceChangedError
	if errors.As(err, &s) || errors.As(err, &p) {
		return ECONFLICT
	}
	return EINTERNAL
}

// ErrorMessage returns the public message of the first domain error in err's
// chain, and a generic message for any other error.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	var s *OutOfStockError
	if errors.As(err, &s) {
		return s.Error()
	}
	var p *PriceChangedError
	if errors.As(err, &p) {
		return p.Error()
	}
	return "internal error"
}

// Sentinel domain errors that callers may test with errors.Is.
var (
	ErrCartEmpty = &Error{Code: ECONFLICT, Message: "the cart is empty: add items before checking out"}
	// ErrIdempotencyMismatch: the key was used before with another body.
	// ErrBucketMoving: the session's data is being moved to another shard
	// (or has moved, and this replica's map has not caught up): a 503
	// with Retry-After, and not the database failing.
	ErrBucketMoving        = &Error{Code: EUNAVAILABLE, Message: "this session's data is moving to another shard; nothing was done, retry in a second"}
	ErrIdempotencyMismatch = &Error{Code: EUNPROCESSABLE, Message: "this Idempotency-Key was already used with a different request body; use a new key for a new order"}
)

// Shortage is an item that checkout could not reserve.
type Shortage struct {
	ItemID    int64  `json:"item_id"`
	Name      string `json:"name"`
	Requested int    `json:"requested"`
	Available int64  `json:"available"`
}

// OutOfStockError lists every cart line that could not be reserved, so the
// client can fix all of them at once.
type OutOfStockError struct {
	Items []Shortage
}

func (e *OutOfStockError) Error() string {
	if len(e.Items) == 1 {
		s := e.Items[0]
		return fmt.Sprintf("not enough stock for %q: %d requested, %d available", s.Name, s.Requested, s.Available)
	}
	return fmt.Sprintf("not enough stock for %d items in the cart", len(e.Items))
}
