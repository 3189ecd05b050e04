package sharded_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/sharded"
	"github.com/perfscale/perfscale/shop/storetest"
)

// Each test's shards are databases from a pool: made once from a
// migrated template and emptied between tests. Making and dropping a
// database took 1 to 3 s each on this machine, a contract run needs ~100,
// and emptying one takes a TRUNCATE.
var dbs struct {
	once     sync.Once
	template string
	err      error
	mu       sync.Mutex
	free     []string // emptied, ready
	all      []string // every name made, dropped at the end
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dbs.template != "" { // made even when its migration failed
		if conn, err := pgx.Connect(context.Background(), pgtest.AdminURL()); err == nil {
			for _, name := range append(dbs.all, dbs.template) {
				conn.Exec(context.Background(), `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
			}
			conn.Close(context.Background())
		}
	}
	os.Exit(code)
}

func randomName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// newShardDatabase is an empty, migrated database for t, emptied and
// given back to the pool when t ends.
func newShardDatabase(t *testing.T) string {
	t.Helper()
	admin := pgtest.Admin(t) // skips (fails under CI=true) without a server
	defer admin.Close(context.Background())
	ctx := context.Background()
	dbs.once.Do(func() {
		dbs.template = randomName("shoptest_shard_template_")
		if _, dbs.err = admin.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{dbs.template}.Sanitize()); dbs.err != nil {
			return
		}
		_, dbs.err = backend.Migrate(ctx, backend.Config{DatabaseURL: pgtest.WithDatabase(pgtest.AdminURL(), dbs.template)})
	})
	if dbs.err != nil {
		t.Fatalf("migrate the template database: %v", dbs.err)
	}
	dbs.mu.Lock()
	var name string
	if n := len(dbs.free); n > 0 {
		name, dbs.free = dbs.free[n-1], dbs.free[:n-1]
	}
	dbs.mu.Unlock()
	if name == "" {
		name = randomName("shoptest_shard_")
		if _, err := admin.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()+` TEMPLATE `+pgx.Identifier{dbs.template}.Sanitize()); err != nil {
			t.Fatalf("create test database %s: %v", name, err)
		}
		dbs.mu.Lock()
		dbs.all = append(dbs.all, name)
		dbs.mu.Unlock()
	}
	url := pgtest.WithDatabase(pgtest.AdminURL(), name)
	t.Cleanup(func() {
		if err := empty(ctx, url); err != nil {
			t.Errorf("empty test database %s: %v", name, err)
			return
		}
		dbs.mu.Lock()
		dbs.free = append(dbs.free, name)
		dbs.mu.Unlock()
	})
	return url
}

// empty deletes every row but the schema's versions and the catalog
// version's (DELETE: a TRUNCATE of the ~40 tables and partitions makes
// new files for each and took about a second), foreign keys unchecked.
func empty(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		AND c.relname NOT IN ('goose_db_version', 'river_migration', 'catalog_version')`)
	if err != nil {
		return err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	batch := &pgx.Batch{}
	batch.Queue(`SET session_replication_role = replica`)
	for _, t := range tables {
		batch.Queue(`DELETE FROM ` + t)
	}
	return conn.SendBatch(ctx, batch).Close()
}

// openShards gives the test a sharded store over s fresh, migrated
// databases on the test server, seeded with items.
func openShards(t *testing.T, s int, items []shop.Item, now func() time.Time) *backend.Backend {
	t.Helper()
	cfg := backend.Config{Now: now}
	for range s {
		cfg.ShardURLs = append(cfg.ShardURLs, newShardDatabase(t))
	}
	return openSeeded(t, cfg, items)
}

// openSeeded opens the backend of cfg for t and seeds it with items.
func openSeeded(t *testing.T, cfg backend.Config, items []shop.Item) *backend.Backend {
	t.Helper()
	ctx := context.Background()
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Seed(ctx, items); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStoreContractOnOneShard(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the three shards' run covers the routing; one shard is the same code with one owner")
	}
	storetest.Run(t, factory(1), setNotes)
}

func TestStoreContractOnThreeShards(t *testing.T) {
	storetest.Run(t, factory(3), setNotes)
}

func factory(s int) storetest.Factory {
	return func(t *testing.T, items []shop.Item, now func() time.Time) shop.Store {
		return openShards(t, s, items, now).Store
	}
}

// setNotes writes through the transaction the shard hands ConfirmOrder's
// callback, a pgx.Tx on the order's shard.
func setNotes(ctx context.Context, tx shop.Tx, orderID int64, notes string) error {
	ptx, ok := tx.(pgx.Tx)
	if !ok {
		return fmt.Errorf("the store's transaction is a %T, want pgx.Tx", tx)
	}
	_, err := ptx.Exec(ctx, `UPDATE orders SET notes = $1 WHERE id = $2`, notes, orderID)
	return err
}

var _ storetest.StockReader = (*sharded.Store)(nil)

const defaultTimeout = 2 * time.Second

func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
