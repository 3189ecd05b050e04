package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/cache"
)

// NotifiedVersionPoll is how often a process reads the catalog version
// when the database notifies its moves (PostgreSQL): only a safety net
// then, where without notifications the poll (1 s) is how another
// process's change is seen.
const NotifiedVersionPoll = 10 * time.Second

// databaseFeed is the catalog version's notifications from the database
// as a cache.Feed: the database's trigger announces every move, so this
// process publishes nothing itself.
type databaseFeed struct{ b *backend.Backend }

func (databaseFeed) Publish(context.Context, int64) error { return nil }

func (f databaseFeed) Subscribe(ctx context.Context, fn func(version int64)) error {
	f.b.CatalogVersionChanges(ctx, fn)
	return nil
}

// feeds are several feeds as one: announcements go to each, and each's
// are taken. A feed that stops is logged; the others carry on.
type feeds struct {
	all []cache.Feed
	log *slog.Logger
}

func (fs feeds) Publish(ctx context.Context, version int64) error {
	var errs []error
	for _, f := range fs.all {
		errs = append(errs, f.Publish(ctx, version))
	}
	return errors.Join(errs...)
}

func (fs feeds) Subscribe(ctx context.Context, fn func(version int64)) error {
	var wg sync.WaitGroup
	for _, f := range fs.all {
		wg.Go(func() {
			if err := f.Subscribe(ctx, fn); err != nil && ctx.Err() == nil {
				fs.log.Warn("a catalog version feed stopped; the others and the poll carry on", "error", err.Error())
			}
		})
	}
	wg.Wait()
	return nil
}

// versionFeed is what keeps this process's catalog version current
// besides its poll, and the poll's interval: on PostgreSQL the database's
// notifications (and Redis's announcements, when there is Redis), polled
// every NotifiedVersionPoll; otherwise Redis's, if any, polled every
// second (the cache's default, 0 here).
func (a *App) versionFeed() (cache.Feed, time.Duration) {
	var all []cache.Feed
	var poll time.Duration
	if a.backend.Postgres != nil {
		all = append(all, databaseFeed{a.backend})
		poll = NotifiedVersionPoll
	}
	if a.shared != nil {
		all = append(all, a.shared)
	}
	switch len(all) {
	case 0:
		return nil, poll
	case 1:
		return all[0], poll
	}
	return feeds{all: all, log: a.log}, poll
}
