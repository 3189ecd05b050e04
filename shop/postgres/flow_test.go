package postgres

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/perfscale/perfscale/shop"
)

func TestNumberedPlaceholders(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"none", `SELECT 1`, `SELECT 1`},
		{"in order", `UPDATE t SET a = ? WHERE id = ? AND b >= ?`, `UPDATE t SET a = $1 WHERE id = $2 AND b >= $3`},
		{"ten and more", strings.Repeat("?,", 10) + "?", "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11"},
		{"quoted text kept", `SELECT '?' , "a?b", ? FROM t WHERE x LIKE ? ESCAPE '\'`, `SELECT '?' , "a?b", $1 FROM t WHERE x LIKE $2 ESCAPE '\'`},
		{"doubled quote", `SELECT 'it''s ?', ?`, `SELECT 'it''s ?', $1`},
		{"casts", `SELECT ?, * FROM unnest(?::bigint[])`, `SELECT $1, * FROM unnest($2::bigint[])`},
		{"already numbered", `SELECT $1::pg_lsn`, `SELECT $1::pg_lsn`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := numbered(tt.in); got != tt.want {
				t.Errorf("numbered(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// The adapter maps a driver error once; wrapping it again (a transaction
// whose statement failed) must not stack a second "database unavailable".
func TestUnavailableMapsOnce(t *testing.T) {
	down := &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}
	once := unavailable(down)
	twice := unavailable(fmt.Errorf("advance order 1: %w", once))
	if shop.ErrorCode(twice) != shop.EUNAVAILABLE {
		t.Fatalf("%v is not EUNAVAILABLE", twice)
	}
	if n := strings.Count(twice.Error(), "database unavailable"); n != 1 {
		t.Errorf("%q says it %d times, want once", twice, n)
	}
	if other := errors.New("syntax error"); unavailable(other) != other {
		t.Errorf("an error that is not about reaching the server changed: %v", unavailable(other))
	}
}
