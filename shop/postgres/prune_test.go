package postgres_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
)

// TestPruneSessionsReadsWhatExpired: pruning expired sessions, hourly,
// reads the sessions that expired since the last run through the expiry
// index, not every session that ever ordered and stays for its orders
// (each hour's run read all of those, and probed their orders, before).
// On a generated history (10,000 sessions over 90 days, two thirds
// expired, most with orders; 20,000 orders) with real statistics, each
// statement is held to the journey's rule for rows (rows read against
// rows returned or written), the first run over the whole backlog, the
// next, an hour later, over the few sessions that expired in that hour,
// and one more at once over none.
func TestPruneSessionsReadsWhatExpired(t *testing.T) {
	skipShort(t)
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	if _, err := backend.Migrate(ctx, backend.Config{DatabaseURL: url}); err != nil {
		t.Fatal(err)
	}
	plans := &planCollector{}
	db, err := postgres.Open(ctx, url, postgres.Options{StatementTimeout: time.Minute, ConnConfig: plans.configure})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC()
	sizes := postgres.Sizes{Orders: 20_000, Sessions: 10_000, Items: 1_000}
	if err := postgres.Generate(ctx, db, sizes, now); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	var expired, kept int
	if err := admin.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM orders o WHERE o.session_id = s.id))
		FROM sessions s WHERE expires_at <= $1`, now.UnixMicro()).Scan(&expired, &kept); err != nil {
		t.Fatal(err)
	}
	if expired < 5_000 || kept < expired/2 {
		t.Fatalf("the history has %d expired sessions, %d of them with orders: not the backlog the test is about", expired, kept)
	}
	clock := now
	store := postgres.NewStore(db, func() time.Time { return clock })
	plans.take()
	for _, run := range []struct {
		name    string
		at      time.Time
		deleted int
	}{
		{"the backlog", now, expired - kept},
		{"an hour later", now.Add(time.Hour), -1},
		{"at once again", now.Add(time.Hour), 0},
	} {
		t.Run(run.name, func(t *testing.T) {
			clock = run.at
			n, err := store.PruneSessions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if run.deleted >= 0 && n != int64(run.deleted) {
				t.Errorf("deleted %d sessions, want %d", n, run.deleted)
			}
			t.Logf("deleted %d sessions", n)
			checkPrunePlans(t, plans.take())
		})
	}
	var left int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM sessions s WHERE expires_at <= $1
		AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.session_id = s.id)`, clock.UnixMicro()).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d expired sessions without orders are left", left)
	}
}

// pruneBuffersPerRow is what pruning may touch per session it reads or
// writes: its probe for orders descends the orders index of each month
// the session lived in and of those made ahead (six here), two or three
// blocks each; a deleted session's foreign key checks probe every month.
const pruneBuffersPerRow = 48

// checkPrunePlans holds each pruning statement to the journey's rule for
// rows, and to pruneBuffersPerRow for buffers.
func checkPrunePlans(t *testing.T, plans []string) {
	t.Helper()
	if len(plans) == 0 {
		t.Fatal("auto_explain sent no plans")
	}
	for _, p := range plans {
		var e explained
		if err := json.Unmarshal([]byte(p), &e); err != nil {
			t.Fatalf("read a plan: %v\n%s", err, p)
		}
		c := measure(e.Plan)
		q := strings.Join(strings.Fields(e.Query), " ")
		rows := max(c.returned, 1)
		t.Logf("read %.0f rows for %.0f returned or written, %.0f buffers: %.100s", c.read, c.returned, c.buffers, q)
		if c.read > readFactor*rows+readSlack || c.buffers > pruneBuffersPerRow*rows+bufferSlack*5 {
			t.Errorf("reads too much: %.0f rows and %.0f buffers for %.0f rows returned or written (allowed %d× rows + %d, %d× buffers + %d); scans %v:\n%s",
				c.read, c.buffers, c.returned, readFactor, readSlack, pruneBuffersPerRow, bufferSlack*5, c.scans, q)
		}
	}
}
