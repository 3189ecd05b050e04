// Command pgseed fills a migrated, empty PostgreSQL database of the shop
// with a realistic history (postgres.Generate: set-based SQL, a million
// orders in seconds), for measurements on realistic statistics:
//
//	pgseed --db postgres://postgres@127.0.0.1:5432/shop --orders 1000000 --sessions 100000 --items 10000
//
// Run `shop migrate --db URL` first. It does not ANALYZE.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/perfscale/perfscale/shop/postgres"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pgseed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("pgseed", flag.ContinueOnError)
	db := fs.String("db", "", "PostgreSQL URL of a migrated, empty shop database")
	var s postgres.Sizes
	fs.IntVar(&s.Orders, "orders", 1_000_000, "orders to generate")
	fs.IntVar(&s.Sessions, "sessions", 100_000, "sessions to generate")
	fs.IntVar(&s.Items, "items", 10_000, "catalog items")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *db == "" {
		return fmt.Errorf("--db is required")
	}
	pg, err := postgres.Open(ctx, *db, postgres.Options{StatementTimeout: time.Hour})
	if err != nil {
		return err
	}
	defer pg.Close()
	if err := pg.CheckSchema(ctx); err != nil {
		return err
	}
	start := time.Now()
	if err := postgres.Generate(ctx, pg, s, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(out, "pgseed: %d orders, %d sessions, %d items in %s\n", s.Orders, s.Sessions, s.Items, time.Since(start).Round(time.Millisecond))
	return nil
}
