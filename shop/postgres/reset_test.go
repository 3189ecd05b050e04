package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/internal/toxitest"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/httpapi"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// Connections to PostgreSQL reset while shoppers check out (Toxiproxy's
// reset_peer between the store and the server, three times): every
// refused request is a 503 problem+json with Retry-After, never a 500,
// whether the reset came before a query, in the middle of one or at its
// commit; and checkouts go on once the resets stop.
func TestResetConnectionsAre503(t *testing.T) {
	ctx := context.Background()
	direct := pgtest.NewDatabase(t)
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	px := toxitest.New(t, map[string]string{"postgres": u.Host})
	u.Host = px.Addr("postgres")
	cfg := backend.Config{DatabaseURL: u.String(), Postgres: postgres.Options{ConnectTimeout: 2 * time.Second}}
	if _, err := backend.Migrate(ctx, backend.Config{DatabaseURL: direct}); err != nil {
		t.Fatal(err)
	}
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Seed(ctx, seed.Items(20)); err != nil {
		t.Fatal(err)
	}
	s := b.Store
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Config{Catalog: s, Sessions: s, Carts: s, Ordering: b.Desk, Health: s, Logger: failureLog(t)}))
	defer srv.Close()

	buyers := startShoppers(t, srv.URL, true)
	defer buyers.Stop()
	testwait.Eventually(t, 30*time.Second, atLeast("checkouts before the resets", &buyers.acked, 5))
	for round := range 3 {
		before := buyers.refused.Load()
		px.Add(t, "postgres", "reset_peer", `{"timeout": 0}`)
		testwait.Eventually(t, 30*time.Second, atLeast(fmt.Sprintf("requests refused in round %d", round+1), &buyers.refused, before+4))
		px.Remove(t, "postgres")
		after := buyers.acked.Load()
		testwait.Eventually(t, 30*time.Second, atLeast(fmt.Sprintf("checkouts after round %d", round+1), &buyers.acked, after+5))
	}
	buyers.Stop()
	t.Logf("%d checkouts acknowledged, %d requests refused with 503 while connections were reset", buyers.acked.Load(), buyers.refused.Load())
}

// failureLog is a logger whose lines (the causes behind the answers) the
// test prints only if it fails.
func failureLog(t *testing.T) *slog.Logger {
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if t.Failed() {
			t.Logf("the service's log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
