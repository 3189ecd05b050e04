package postgres_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres"
)

// Every replica reads every shard's quotas every few seconds (the item
// pages' stock figures), so what one reading costs is paid replicas ×
// shards times over: it is one statement (it was two, one a table), and
// it sums a transfer in flight apart from the quota it left.
func TestQuotasAreOneStatement(t *testing.T) {
	// Only the quota tables' statements are counted: River's polls run
	// beside the reading.
	var quotaReads atomic.Int64
	counting := atomic.Bool{}
	hook := func(sql string, _ []any) {
		if counting.Load() && (strings.Contains(sql, "FROM items") || strings.Contains(sql, "quota_transfers")) {
			quotaReads.Add(1)
		}
	}
	b := openBackend(t, backend.Config{Postgres: postgres.Options{QueryHook: hook}})
	ctx := context.Background()
	before, _, err := b.Postgres.Quotas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := b.Postgres.MoveQuota(ctx, "move-1", 1, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Units != min(3, before[1]) || tr.Units == 0 {
		t.Fatalf("moved %d units of item 1 (quota %d), want 3", tr.Units, before[1])
	}
	counting.Store(true)
	quota, inFlight, err := b.Postgres.Quotas(ctx)
	counting.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	if quota[1] != before[1]-tr.Units || inFlight[1] != tr.Units || quota[2] != before[2] || len(inFlight) != 1 {
		t.Errorf("quotas after moving %d of item 1: quota %d (was %d), in flight %v; item 2 %d (was %d)",
			tr.Units, quota[1], before[1], inFlight, quota[2], before[2])
	}
	if n := quotaReads.Load(); n != 1 {
		t.Errorf("reading the quotas ran %d statements on items and quota_transfers, want 1", n)
	}
}
