package sharded_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// costRounds is how many rounds the checkout cost is measured in: one
// user alternates between one database and the shards round by round
// (one, shards, shards, one, ...), so a load that drifts over a minute
// falls on both alike.
const costRounds = 10

// TestCheckoutCostOnShardsAgainstOneDatabase measures issue 20's goal, a
// checkout on S shards at most 1.2 × a checkout on one database (p50 at
// one user), when SHOP_CHECKOUT_ROUNDS=N asks for N checkouts a round on
// each side (scripts/bench-shards.sh RUNS=checkout); SHOP_CHECKOUT_SHARDS
// is S (3). Both sides are OrderDesk.PlaceOrder with its River job, two
// lines, a fresh session each, on databases of the same PostgreSQL
// server, stock enough that no quota runs out. It logs each round's load
// average and p50s, and the whole run's; a run with a round whose load
// average was above twice the machine's cores is flagged, not a result.
func TestCheckoutCostOnShardsAgainstOneDatabase(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SHOP_CHECKOUT_ROUNDS"))
	if n <= 0 {
		t.Skip("a measurement: set SHOP_CHECKOUT_ROUNDS=N (checkouts a round on each side)")
	}
	s := 3
	if v := os.Getenv("SHOP_CHECKOUT_SHARDS"); v != "" {
		var err error
		if s, err = strconv.Atoi(v); err != nil || s < 1 {
			t.Fatalf("SHOP_CHECKOUT_SHARDS=%q: want a shard count of at least 1", v)
		}
	}
	ctx := context.Background()
	items := seed.Items(10)
	for i := range items {
		items[i].Stock = 1_000_000
	}
	type side struct {
		name  string
		b     *backend.Backend
		rt    *pgtest.RoundTrips
		trips int
		taken []time.Duration
		p50s  []time.Duration
	}
	open := func(name string, cfg backend.Config) *side {
		sd := &side{name: name, rt: &pgtest.RoundTrips{}}
		cfg.Postgres.ConnConfig = func(c *pgx.ConnConfig) { c.DialFunc = sd.rt.Dial }
		sd.b = openSeeded(t, cfg, items)
		return sd
	}
	one := open("one database", backend.Config{DatabaseURL: newShardDatabase(t)})
	var urls []string
	for range s {
		urls = append(urls, newShardDatabase(t))
	}
	shards := open(fmt.Sprintf("%d shards", s), backend.Config{ShardURLs: urls})
	checkout := func(sd *side, key string) time.Duration {
		t.Helper()
		_, hash := shop.NewToken()
		sess := must(sd.b.Store.CreateSession(ctx, hash))(t)
		for _, item := range []int64{3, 7} {
			if _, err := sd.b.Store.SetCartItem(ctx, sess.ID, item, 2); err != nil {
				t.Fatal(err)
			}
		}
		trips, start := sd.rt.Count(), time.Now()
		_, created, err := sd.b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: key,
			Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}})
		took := time.Since(start)
		sd.trips += sd.rt.Count() - trips
		if err != nil || !created {
			t.Fatalf("%s: checkout %s: created %v, %v", sd.name, key, created, err)
		}
		return took
	}
	for _, sd := range []*side{one, shards} { // connections and prepared statements
		for i := range 20 {
			checkout(sd, fmt.Sprintf("warm-%d", i))
		}
	}
	one.trips, shards.trips = 0, 0
	busy := 0
	for round := range costRounds {
		order := []*side{one, shards}
		if round%2 == 1 {
			order = []*side{shards, one}
		}
		load := loadAverage(t)
		for _, sd := range order {
			var taken []time.Duration
			for i := range n {
				taken = append(taken, checkout(sd, fmt.Sprintf("r%d-%d", round, i)))
			}
			sd.taken = append(sd.taken, taken...)
			sd.p50s = append(sd.p50s, p50(taken))
		}
		if load > 2*float64(runtime.NumCPU()) {
			busy++
		}
		t.Logf("round %d: load average %.2f; p50 one database %v, %s %v (%.2f×)", round+1, load,
			one.p50s[round], shards.name, shards.p50s[round], float64(shards.p50s[round])/float64(one.p50s[round]))
	}
	ratio := float64(p50(shards.taken)) / float64(p50(one.taken))
	verdict := "a result"
	if busy > 0 {
		verdict = fmt.Sprintf("FLAGGED, not a result: the load average was above %d (twice the %d cores) in %d of %d rounds",
			2*runtime.NumCPU(), runtime.NumCPU(), busy, costRounds)
	}
	t.Logf("round trips to PostgreSQL per checkout: one database %.2f, %s %.2f",
		float64(one.trips)/float64(len(one.taken)), shards.name, float64(shards.trips)/float64(len(shards.taken)))
	t.Logf("checkout p50 at one user, %d rounds of %d each way: one database %v, %s %v: %.2f× (goal ≤ 1.2×); %s",
		costRounds, n, p50(one.taken), shards.name, p50(shards.taken), ratio, verdict)
}

func p50(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// loadAverage is the machine's one-minute load average.
func loadAverage(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		t.Fatalf("load average: %v", err)
	}
	f, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	if err != nil {
		t.Fatalf("load average in %q: %v", b, err)
	}
	return f
}
