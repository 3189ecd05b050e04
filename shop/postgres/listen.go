package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// CatalogVersionChannel is notified with the new version each time the
// catalog version moves (a catalog change, a checkout that sold an item
// out; migration 00019's trigger), so each process's in-memory version
// follows it instead of polling. It is the only channel the shop's own
// writes notify: every notification costs each listening connection of
// the database a transaction, so writes made on every request (order
// events: migration 00021 dropped their trigger) notify nobody.
const CatalogVersionChannel = "shop_catalog_version"

// listenRetry is the pause before a lost listening connection is opened
// again.
const listenRetry = time.Second

// Listen calls fn with each notification's payload on channel, and with
// reconnected true each time it starts listening: at the start and after
// a lost connection, when notifications sent meanwhile are lost, so fn
// should then do what a notification would. It holds one connection of
// its own (not one of the pool's, which statements need) and runs until
// ctx ends; a connection lost is opened again after a pause. An idle
// listener sends the server nothing.
func (db *DB) Listen(ctx context.Context, channel string, fn func(payload string, reconnected bool)) {
	for ctx.Err() == nil {
		err := db.listenOnce(ctx, channel, fn)
		if ctx.Err() != nil {
			return
		}
		_ = err // the pause below retries; the caller's safety poll covers the gap
		t := time.NewTimer(listenRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// listenOnce listens on one connection until it fails or ctx ends.
func (db *DB) listenOnce(ctx context.Context, channel string, fn func(payload string, reconnected bool)) error {
	cfg := db.primary.Config().ConnConfig.Copy()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("listen on %s: connect: %w", channel, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen on %s: %w", channel, err)
	}
	fn("", true)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil
			}
			return fmt.Errorf("listen on %s: %w", channel, err)
		}
		fn(n.Payload, false)
	}
}

// Poke sends on wake without blocking: a wake-up already pending covers
// this one.
func Poke(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}
