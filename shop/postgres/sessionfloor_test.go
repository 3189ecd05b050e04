package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
)

// TestSessionOrderFloorIsInlined: "my orders" bounds a session's orders by
// session_order_id_floor of its creation (dialect.SessionOrders). The plan
// must hold the function's expression, inlined, not a call of an SQL
// function that plans its body on each execution (migration 00022); its
// answer for a NULL stays NULL. Down to 00021 the call is back (the test
// fails on the code before 00022).
func TestSessionOrderFloorIsInlined(t *testing.T) {
	ctx := context.Background()
	db, err := postgres.Open(ctx, pgtest.NewDatabase(t), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		version int64 // 0: the latest
		inlined bool
	}{
		{"latest", 0, true},
		{"down to 21", 21, false},
		{"up again", 22, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.version > 0 {
				if err := db.MigrateTo(ctx, tc.version); err != nil {
					t.Fatal(err)
				}
			}
			var plan []string
			rows, err := db.Pool().Query(ctx, `EXPLAIN (VERBOSE, COSTS OFF) SELECT session_order_id_floor(created_at) FROM sessions WHERE id = 1`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, line)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "\n")
			if called := strings.Contains(text, "session_order_id_floor("); called == tc.inlined {
				t.Errorf("inlined %v, want %v:\n%s", !called, tc.inlined, text)
			}
			var null *int64
			if err := db.Pool().QueryRow(ctx, `SELECT session_order_id_floor(NULL)`).Scan(&null); err != nil || null != nil {
				t.Errorf("session_order_id_floor(NULL) = %v, %v; want NULL", null, err)
			}
		})
	}
}
