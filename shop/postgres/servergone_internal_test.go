package postgres

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/perfscale/perfscale/shop/postgres/pgtest"
)

func TestServerGoneTellsAServerThatWentAwayFromAnOrdinaryError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		gone bool
	}{
		{&pgconn.PgError{Code: "57P01"}, true}, // admin_shutdown
		{&pgconn.PgError{Code: "57P02"}, true}, // crash_shutdown
		{&pgconn.PgError{Code: "57P03"}, true}, // cannot_connect_now
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("read: %w", io.EOF), true},
		{fmt.Errorf("write: %w", syscall.EPIPE), true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{&pgconn.PgError{Code: "57014"}, false}, // statement timeout
		{&pgconn.PgError{Code: "23505"}, false}, // unique violation
		{&pgconn.PgError{Code: "40001"}, false}, // serialization failure
		{&pgconn.PgError{Code: "57P05"}, false}, // this session's idle timeout only
		{fmt.Errorf("query: %w", context.Canceled), false},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), false},
		{fmt.Errorf("query: %w: %w", context.Canceled, io.ErrUnexpectedEOF), false}, // a cancelled read
		{nil, false},
	} {
		if got := serverGone(tc.err); got != tc.gone {
			t.Errorf("serverGone(%v) = %v, want %v", tc.err, got, tc.gone)
		}
	}
}

func TestShutdownCodeReadsTheSQLSTATEOfAnErrorResponse(t *testing.T) {
	fatal := []byte("E\x00\x00\x00\x60SFATAL\x00VFATAL\x00C57P01\x00Mterminating connection due to administrator command\x00\x00")
	for _, tc := range []struct {
		msg  []byte
		code string
	}{
		{fatal, "57P01"},
		{fatal[:12], ""}, // cut before the code
		{[]byte("A\x00\x00\x00\x10"), ""},
		{nil, ""},
	} {
		if got := shutdownCode(tc.msg); got != tc.code {
			t.Errorf("shutdownCode(%q) = %q, want %q", tc.msg, got, tc.code)
		}
	}
}

// BenchmarkPeekIdle is what the look at an idle connection costs each
// time the pool hands one out (one recv with MSG_PEEK|MSG_DONTWAIT).
func BenchmarkPeekIdle(b *testing.B) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.AdminURL())
	if err != nil {
		pgtest.Unavailable(b, err.Error())
	}
	defer conn.Close(ctx)
	for b.Loop() {
		if state, err := peekIdle(conn.PgConn().Conn()); state != idleQuiet {
			b.Fatalf("an idle connection to a running server: %v %v", state, err)
		}
	}
}
