package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlite"
)

// TestStatementReusedInsideItsOwnRowLoop: the connection keeps statements
// prepared; running a statement again while a result set of it is still
// open (a query inside a row loop, on the transaction's one connection)
// must not disturb the open result set.
func TestStatementReusedInsideItsOwnRowLoop(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := sqlite.NewStore(db, nil).SeedIfEmpty(ctx, seed.Items(10)); err != nil {
		t.Fatal(err)
	}
	tx, err := db.WriteDB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	const q = `SELECT id FROM items WHERE id > ? ORDER BY id`
	for round := range 3 { // the statement is prepared once, then reused
		rows, err := tx.QueryContext(ctx, q, 0)
		if err != nil {
			t.Fatal(err)
		}
		var outer []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			outer = append(outer, id)
			var inner int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM (`+q+`)`, id).Scan(&inner); err != nil {
				t.Fatal(err)
			}
			var again int64
			if err := tx.QueryRowContext(ctx, q, id).Scan(&again); err != nil && id < 10 {
				t.Fatalf("round %d: the same statement inside its own row loop: %v", round, err)
			}
			if id < 10 && again != id+1 {
				t.Fatalf("round %d: inner read %d after %d, want %d", round, again, id, id+1)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if len(outer) != 10 || outer[9] != 10 {
			t.Fatalf("round %d: outer loop read %v, want ids 1 to 10", round, outer)
		}
	}
}
