package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop/postgres/pgtest"
)

// BenchmarkConnect is the time to open one connection to the local server
// (TCP, startup, authentication), the figure --db-connect-timeout is set
// against: go test -run '^$' -bench Connect ./shop/postgres
func BenchmarkConnect(b *testing.B) {
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(pgtest.AdminURL())
	if err != nil {
		b.Fatal(err)
	}
	pgtest.Admin(b).Close(ctx) // skips without PostgreSQL
	for b.Loop() {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		conn.Close(ctx)
	}
}
