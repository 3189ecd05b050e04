package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"runtime"
	"testing"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// The sharded design's stock decision (docs/sharding.md) rests on what
// each choice adds to a checkout. (a) A reservation on a catalog server:
// one round trip that reserves every line or none and records it in the
// ledger, on every checkout, and one that settles it off the customer's
// path. (b) Escrow: the checkout takes its shard's own quota in its own
// transaction (today's checkout, unchanged), and only a checkout that
// finds its quota short borrows: a debit with a transfer row on the
// donor shard and an idempotent credit on its own. BenchmarkStockDesignCosts
// puts those beside today's whole checkout on one database, one user, on
// the same server in one run (both "shards" are one database here: the
// statements and commits are what is measured, not the network):
//
//	go test -run '^$' -bench StockDesignCosts -benchtime 2000x ./shop/postgres

// reservationSchema is the ledger as docs/sharding.md draws it.
const reservationSchema = `
CREATE TABLE stock_reservations (
    id              TEXT     PRIMARY KEY,
    session_id      BIGINT   NOT NULL,
    idempotency_key TEXT     NOT NULL,
    item_ids        BIGINT[] NOT NULL,
    quantities      INT[]    NOT NULL,
    state           TEXT     NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'settled', 'released')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    closed_at       TIMESTAMPTZ
);
CREATE INDEX stock_reservations_open ON stock_reservations (created_at) WHERE state = 'open';
CREATE TABLE quota_transfers_out (
    id      TEXT   PRIMARY KEY,
    item_id BIGINT NOT NULL,
    units   BIGINT NOT NULL CHECK (units > 0),
    to_shard INT   NOT NULL,
    state   TEXT   NOT NULL DEFAULT 'sent' CHECK (state IN ('sent', 'received'))
);
CREATE TABLE quota_transfers_in (
    id      TEXT   PRIMARY KEY,
    item_id BIGINT NOT NULL,
    units   BIGINT NOT NULL
);
UPDATE items SET stock = 1000000000;`

// reserveSQL reserves every line or none in one statement (one round
// trip, its own transaction): the items are locked in id order, the
// decrement and the ledger row happen only if every line fits, and each
// line's stock comes back for the shortage message otherwise.
const reserveSQL = `
WITH want AS (
    SELECT * FROM unnest($4::bigint[], $5::int[]) AS w (item_id, qty)
), locked AS (
    SELECT i.id, i.name, i.price_cents, i.available, i.stock, w.qty
    FROM items i JOIN want w ON w.item_id = i.id
    ORDER BY i.id FOR UPDATE OF i
), verdict AS (
    SELECT count(*) = (SELECT count(*) FROM want) AND bool_and(available AND stock >= qty) AS ok FROM locked
), took AS (
    UPDATE items i SET stock = i.stock - l.qty
    FROM locked l, verdict v WHERE v.ok AND i.id = l.id
    RETURNING i.id
), ledger AS (
    INSERT INTO stock_reservations (id, session_id, idempotency_key, item_ids, quantities)
    SELECT $1, $2, $3, $4, $5 FROM verdict WHERE ok
    RETURNING id
)
SELECT l.id, l.name, l.price_cents, l.stock, v.ok, (SELECT count(*) FROM took), (SELECT count(*) FROM ledger)
FROM locked l, verdict v ORDER BY l.id`

const settleSQL = `UPDATE stock_reservations SET state = 'settled', closed_at = now() WHERE id = $1 AND state = 'open'`

// debitSQL takes units of an item's quota on the donor shard and records
// the transfer, or does nothing if the donor has fewer.
const debitSQL = `
WITH taken AS (
    UPDATE items SET stock = stock - $3 WHERE id = $2 AND stock >= $3 RETURNING id
)
INSERT INTO quota_transfers_out (id, item_id, units, to_shard)
SELECT $1, $2, $3, 2 FROM taken RETURNING id`

// creditSQL adds a transfer's units to the receiving shard's quota once:
// a repeated credit (the reconciler finishing a transfer) finds its row.
const creditSQL = `
WITH got AS (
    INSERT INTO quota_transfers_in (id, item_id, units) VALUES ($1, $2, $3)
    ON CONFLICT (id) DO NOTHING RETURNING item_id, units
)
UPDATE items SET stock = items.stock + got.units FROM got WHERE items.id = got.item_id`

func BenchmarkStockDesignCosts(b *testing.B) {
	ctx := context.Background()
	be := openBenchBackend(b)
	pool := be.Postgres.Pool()
	cart := []int64{3, 7} // two lines, as the journey's checkout
	quantities := []int32{1, 2}

	b.Run("round-trip", func(b *testing.B) {
		for b.Loop() {
			if _, err := pool.Exec(ctx, `SELECT 1`); err != nil {
				b.Fatal(err)
			}
		}
	})
	var reserved []string
	b.Run("reserve", func(b *testing.B) {
		for b.Loop() {
			id := newReservationID()
			rows, err := pool.Query(ctx, reserveSQL, id, int64(4242), "key-"+id, cart, quantities)
			if err != nil {
				b.Fatal(err)
			}
			lines := 0
			for rows.Next() {
				var itemID, price, stock, took, ledger int64
				var name string
				var ok bool
				if err := rows.Scan(&itemID, &name, &price, &stock, &ok, &took, &ledger); err != nil {
					b.Fatal(err)
				}
				if !ok || took != 2 || ledger != 1 {
					b.Fatalf("reservation %s: ok %v, %d lines taken, %d ledger rows", id, ok, took, ledger)
				}
				lines++
			}
			if err := rows.Err(); err != nil || lines != 2 {
				b.Fatalf("reservation %s: %d lines, %v", id, lines, err)
			}
			reserved = append(reserved, id)
		}
	})
	b.Run("settle", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if i >= len(reserved) {
				b.Skip("fewer reservations than settlements: run with -benchtime Nx")
			}
			if _, err := pool.Exec(ctx, settleSQL, reserved[i]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("borrow", func(b *testing.B) {
		for b.Loop() {
			id := newReservationID()
			var sent string
			if err := pool.QueryRow(ctx, debitSQL, id, int64(11), int64(3)).Scan(&sent); err != nil {
				b.Fatalf("debit: %v", err)
			}
			tag, err := pool.Exec(ctx, creditSQL, id, int64(12), int64(3))
			if err != nil || tag.RowsAffected() != 1 {
				b.Fatalf("credit: %v (%d rows)", err, tag.RowsAffected())
			}
		}
	})
	b.Run("checkout-one-database", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			sess := cartOf(b, be.Store, cart, quantities)
			b.StartTimer()
			_, created, err := be.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess, IdempotencyKey: newReservationID(),
				Checkout: shop.Checkout{CustomerName: "Bench", Email: "bench@example.com"}})
			if err != nil || !created {
				b.Fatalf("checkout: created %v, %v", created, err)
			}
		}
	})
}

// BenchmarkStockDesignCapacity is the shared-write-point question: with
// eight concurrent clients, how many reservations a second one server
// takes (design (a) puts every checkout's reservation on one catalog
// server) against how many whole checkouts one database takes (what one
// shard does under (b)). Each result is ns per operation over all
// clients: its inverse is the server's rate.
//
//	go test -run '^$' -bench StockDesignCapacity -benchtime 2000x ./shop/postgres
func BenchmarkStockDesignCapacity(b *testing.B) {
	ctx := context.Background()
	be := openBenchBackend(b)
	pool := be.Postgres.Pool()
	cart := []int64{3, 7}
	quantities := []int32{1, 2}
	b.Run("reserve-8-clients", func(b *testing.B) {
		b.SetParallelism(8 / max(1, runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := newReservationID()
				if _, err := pool.Exec(ctx, reserveSQL, id, int64(4242), "key-"+id, cart, quantities); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("checkout-8-clients", func(b *testing.B) {
		sessions := make(chan int64, b.N)
		for range b.N {
			sessions <- cartOf(b, be.Store, cart, quantities)
		}
		b.ResetTimer()
		b.SetParallelism(8 / max(1, runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _, err := be.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: <-sessions, IdempotencyKey: newReservationID(),
					Checkout: shop.Checkout{CustomerName: "Bench", Email: "bench@example.com"}})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// openBenchBackend is a migrated, seeded database with the ledger and
// transfer tables and stock enough for any run.
func openBenchBackend(b *testing.B) *backend.Backend {
	ctx := context.Background()
	cfg := backend.Config{DatabaseURL: pgtest.NewDatabase(b)}
	if _, err := backend.Migrate(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	be, err := backend.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	if _, err := be.Seed(ctx, seed.Items(50)); err != nil {
		b.Fatal(err)
	}
	if _, err := be.Postgres.Pool().Exec(ctx, reservationSchema); err != nil {
		b.Fatal(err)
	}
	return be
}

// cartOf is a new session with the cart's lines.
func cartOf(b *testing.B, store shop.Store, items []int64, quantities []int32) int64 {
	ctx := context.Background()
	_, hash := shop.NewToken()
	s, err := store.CreateSession(ctx, hash)
	if err != nil {
		b.Fatal(err)
	}
	for i, item := range items {
		if _, err := store.SetCartItem(ctx, s.ID, item, int(quantities[i])); err != nil {
			b.Fatal(err)
		}
	}
	return s.ID
}

func newReservationID() string {
	var r [16]byte
	rand.Read(r[:])
	return hex.EncodeToString(r[:])
}
