package app

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres"
)

// Every pool of every store is named by its shard and role in the pool
// metrics: SQLite's writer and readers, PostgreSQL's primary and read
// replica, each shard's primary.
func TestPoolStatsNameEveryPool(t *testing.T) {
	url := migratedDatabase(t)
	// The plain case runs first: the sharded one claims url as shard 1.
	shards := []string{url, migratedDatabase(t)}
	for _, tc := range []struct {
		name string
		cfg  backend.Config
		want []string
	}{
		{"sqlite", backend.Config{SQLitePath: filepath.Join(t.TempDir(), "shop.db")}, []string{"/write", "/read"}},
		{"postgres with a replica", backend.Config{DatabaseURL: url, Postgres: postgres.Options{MaxConns: 3, Replicas: []string{url}}},
			[]string{"/primary", "/replica-1"}},
		{"two shards", backend.Config{ShardURLs: shards, Postgres: postgres.Options{MaxConns: 3}}, []string{"1/primary", "2/primary"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := backend.OpenStore(t.Context(), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			var got []string
			for _, s := range poolStats(b) {
				got = append(got, s.Shard+"/"+s.Pool)
				if s.Max == 0 || (tc.cfg.SQLitePath == "" && s.Max != 3) {
					t.Errorf("%s/%s: size %d", s.Shard, s.Pool, s.Max)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("pools %v, want %v", got, tc.want)
			}
		})
	}
}
