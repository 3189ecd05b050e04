package app

import (
	"net/http"

	"github.com/perfscale/perfscale/shop/antipattern"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/sqlite"
	"github.com/perfscale/perfscale/shop/sqlstore"
)

// The anti-pattern switches (--antipattern), composed here in place of the
// good parts: each is a decorator or an alternative implementation from
// shop/antipattern, or an option of a store; see docs/antipatterns.md.

func (a *App) on(n antipattern.Name) bool { return a.cfg.Antipatterns.Has(n) }

// badStore sets the store's options for the switches that change its SQL
// (missing-index, n-plus-one) or its connections (no-pool).
func (a *App) badStore(bc *backend.Config) {
	bc.BadQueries = sqlstore.BadQueries{NPlusOne: a.on(antipattern.NPlusOne), MissingIndex: a.on(antipattern.MissingIndex)}
	if a.on(antipattern.NoPool) {
		bc.SQLiteOptions = append(bc.SQLiteOptions, sqlite.WithoutPool())
		bc.Postgres.NoPool = true
	}
}

// cacheAntipatterns builds what no-cache and local-cache put in place of
// the cache layers; done reports whether one did.
func (a *App) cacheAntipatterns() (done bool, err error) {
	switch {
	case a.on(antipattern.NoCache):
		a.catalog, a.sessions = a.store, a.store
	case a.on(antipattern.LocalCache):
		local, err := antipattern.NewLocalCatalog(a.store, 0)
		if err != nil {
			return true, err
		}
		a.catalog, a.sessions = local, a.store
	default:
		return false, nil
	}
	a.localSessions()
	return true, nil
}

// localSessions puts sessions and carts held in memory in place of the
// store's and the shared cache's (local-sessions).
func (a *App) localSessions() {
	if !a.on(antipattern.LocalSessions) {
		return
	}
	a.memory = antipattern.NewMemorySessions(a.store, a.catalog)
	a.sessions, a.carts = a.memory, a.memory
}

// orderingAntipatterns wraps checkout: the mail sent in the request
// (sync-mail), the cart held in memory saved first (local-sessions).
func (a *App) orderingAntipatterns() {
	if a.on(antipattern.SyncMail) {
		a.ordering = antipattern.NewInRequestMail(a.ordering, a.store, jobs.ConfirmationMail, a.cfg.MailLatency)
	}
	if a.memory != nil {
		a.ordering = a.memory.Ordering(a.ordering)
	}
}

// httpAntipatterns wraps the API's handler: no compression, the global
// lock around requests, checkouts sent through hops (outermost, so each
// hop is a whole HTTP request and the lock is taken at the last).
func (a *App) httpAntipatterns(h http.Handler) (http.Handler, error) {
	if a.cfg.Role == RoleWorker {
		return h, nil
	}
	if a.on(antipattern.NoCompression) {
		h = antipattern.WithoutCompression(h)
	}
	if a.on(antipattern.GlobalLock) {
		var lock antipattern.Locker = &antipattern.ProcessLock{}
		if a.cfg.DatabaseURL != "" {
			g, err := postgres.NewGlobalLock(a.cfg.DatabaseURL, a.cfg.Postgres)
			if err != nil {
				return nil, err
			}
			a.onClose(g.Close)
			lock = g
		}
		h = antipattern.WithGlobalLock(lock, h)
	}
	if a.on(antipattern.ExtraHops) {
		k := a.cfg.Hops
		if k == 0 {
			k = antipattern.DefaultHops
		}
		hops, err := antipattern.NewHops(k, h)
		if err != nil {
			return nil, err
		}
		a.onClose(hops.Close)
		a.hops, h = hops, hops
	}
	return h, nil
}

// warnAntipatterns says, at start, which switches this process runs with.
func (a *App) warnAntipatterns() {
	for _, n := range a.cfg.Antipatterns.Names() {
		a.log.Warn("anti-pattern switched on", "antipattern", n, "effect", antipattern.Describe(antipattern.Name(n)))
	}
}
