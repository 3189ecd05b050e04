package app

import (
	"slices"
	"testing"
)

// Every process of a sharded store read every shard's stock figures (two
// statements a shard every StockFigureEvery), the worker too, though it
// serves no item page: at four replicas and four shards the worker's were
// a fifth of them. The worker no longer starts them; the roles that
// serve item pages still do.
func TestOnlyTheRolesServingItemPagesReadTheStockFigures(t *testing.T) {
	urls := migratedShards(t, 2)
	for _, tc := range []struct {
		role string
		want bool
	}{
		{RoleWorker, false},
		{RoleAPI, true},
		{RoleAll, true},
	} {
		t.Run(tc.role, func(t *testing.T) {
			cfg := Config{DatabaseURL: urls[0], ShardURLs: urls, Role: tc.role, Addr: "127.0.0.1:0", SeedItems: 12, AdminToken: "admin"}
			a, err := New(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if got := slices.Contains(a.loops, loopStockFigures); got != tc.want {
				t.Fatalf("role %s: stock figures started %v, want %v (loops %v)", tc.role, got, tc.want, a.loops)
			}
		})
	}
}
