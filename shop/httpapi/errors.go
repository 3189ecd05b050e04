package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// statusOf maps domain error codes to HTTP statuses, in one place.
var statusOf = map[string]int{
	shop.EINVALID:       http.StatusBadRequest,
	shop.EUNPROCESSABLE: http.StatusUnprocessableEntity,
	shop.EUNAUTHORIZED:  http.StatusUnauthorized,
	shop.EFORBIDDEN:     http.StatusForbidden,
	shop.ENOTFOUND:      http.StatusNotFound,
	shop.ECONFLICT:      http.StatusConflict,
	shop.EUNAVAILABLE:   http.StatusServiceUnavailable,
	shop.EINTERNAL:      http.StatusInternalServerError,
}

// Codes of refusals made by the HTTP layer itself, before any domain code
// runs: they have no domain error, but a client switching on a problem's
// code must find one on every problem (a 405 had none).
const (
	codeMethodNotAllowed     = "method_not_allowed"
	codeUnsupportedMediaType = "unsupported_media_type"
	codeTooLarge             = "too_large"
	codeTooManyRequests      = "too_many_requests"
)

// handlerFunc is a handler that returns its error instead of writing it;
// the adapter (handle) turns the error into a problem response.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// writeError sends the client only the public part of a failure: the
// code's status and the domain message, never an internal error's text.
// It returns the cause of a 5xx for the request's log line, which is the
// one line the request gets (a second line per failure doubled the log of
// a replica shedding load).
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) (cause error) {
	if errors.Is(err, errShed) {
		// First, before the targets of errors.As below, which escape and
		// cost a refusal an allocation each: a replica at ten times its
		// capacity writes nine of these for each answer.
		if errors.Is(r.Context().Err(), context.Canceled) {
			s.log.DebugContext(r.Context(), "request abandoned by the client", "error", err.Error())
			return nil
		}
		// enter set Retry-After. Nothing was done: even a checkout
		// without an Idempotency-Key may be sent again.
		writeShed(w, r, requestID(r.Context()))
		return nil
	}
	var body *bodyError
	if errors.As(err, &body) {
		// Before the abandoned check: a failed body read cancels the
		// context, but the client is there to read this.
		s.log.DebugContext(r.Context(), "request body unreadable", "error", err.Error(), "status", body.status)
		w.Header().Set("Connection", "close")
		writeProblem(w, r, problem{Status: body.status, Code: shop.EINVALID, Detail: body.detail})
		return nil
	}
	if errors.Is(r.Context().Err(), context.Canceled) {
		// The client is gone (our own timeout would be DeadlineExceeded):
		// nobody reads a problem, and the failure is the client's leaving,
		// not ours. The request line records it as 499.
		s.log.DebugContext(r.Context(), "request abandoned by the client", "error", err.Error())
		return nil
	}
	p := problem{}
	var oos *shop.OutOfStockError
	var changed *shop.PriceChangedError
	var tooMany errTooManyStreams
	var noShard *noShardAnswered
	switch {
	case errors.Is(err, errUnsupportedMediaType):
		p.Status, p.Code, p.Detail = http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "send the request body as JSON with Content-Type: application/json"
	case errors.Is(err, errBodyTooLarge):
		p.Status, p.Code, p.Detail = http.StatusRequestEntityTooLarge, codeTooLarge, "the request body is larger than 64 KiB"
	case isRateLimited(err):
		p.Status, p.Code, p.Detail = http.StatusTooManyRequests, codeTooManyRequests, "too many new sessions from your address: reuse the session you have, or retry after the time in Retry-After"
		w.Header().Set("Retry-After", retryAfterSeconds(rateLimitedWait(err)))
	case errors.As(err, &tooMany):
		p.Status, p.Code, p.Detail = http.StatusTooManyRequests, codeTooManyRequests, tooMany.detail
		w.Header().Set("Retry-After", "5")
	case errors.As(err, &oos):
		p.Status, p.Code, p.Detail, p.Items = http.StatusConflict, shop.ECONFLICT, oos.Error(), oos.Items
	case errors.As(err, &changed):
		p.Status, p.Code, p.Detail, p.Cart = http.StatusConflict, shop.ECONFLICT, changed.Error(), changed.Cart
	case errors.As(err, &noShard):
		p.Status, p.Code, p.MissingShards = http.StatusServiceUnavailable, shop.EUNAVAILABLE, noShard.missing
		p.Detail = "no shard of the store answered; missing_shards says why each did not"
	case errors.Is(err, context.DeadlineExceeded):
		p.Status, p.Code, p.Detail = http.StatusServiceUnavailable, shop.EUNAVAILABLE, "the service took too long to answer; retry later"
	default:
		code := shop.ErrorCode(err)
		p.Status, p.Code, p.Detail = statusOf[code], code, shop.ErrorMessage(err)
	}
	switch p.Status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="shop"`)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	}
	if p.Status >= 500 {
		cause = err
	} else {
		// The code, not the message: a refusal's message may name what
		// was refused, and a rejected value (an e-mail address) does not
		// belong in a log. The client has the detail.
		s.log.DebugContext(r.Context(), "request refused", "code", p.Code, "status", p.Status)
	}
	writeProblem(w, r, p)
	return cause
}

// StatusClientClosedRequest is nginx's code for a request whose client
// went away before the answer. It is never sent (there is nobody to send
// it to); it marks such requests in the request log, and they are counted
// apart from answered ones in shop_http_requests_abandoned_total.
const StatusClientClosedRequest = 499

// slowRequest is how long a successful request may take and still be
// logged only at debug level.
const slowRequest = 500 * time.Millisecond

// logLevel is for the request log line. A fast success is logged at debug
// level: at the menu's rate, encoding a log line for every answered request
// cost a fifth of the throughput (docs/performance.md), and the metrics
// count them by route and status already. Refused, abandoned and slow
// requests are logged at info; a 503 (a dependency failing or refused by
// its guard, checkout held back, a deadline passed: nothing was done, and
// the client is told when to retry) at warn, since it is the service
// protecting itself, not a defect; other failures (a 500: a bug) at error.
func logLevel(status int, d time.Duration) slog.Level {
	switch {
	case status == http.StatusServiceUnavailable:
		return slog.LevelWarn
	case status >= 500:
		return slog.LevelError
	case status >= 400 || d >= slowRequest:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}
