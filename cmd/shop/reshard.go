package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/reshard"
	"github.com/perfscale/perfscale/shop/shard"
)

// reshardHelp is `shop reshard --help`.
const reshardHelp = `Usage: shop reshard --db URL [--db URL ...] [--add URL] [--add-only] [--buckets FIRST-LAST] [--readers-wait D]

Adds a shard to a running sharded shop and moves buckets to it (docs/sharding.md):
--db the shards the service runs on, shard 1 first (as its --db list); --add the new
shard's PostgreSQL database (migrated here, given the catalog with no stock quota).
Each bucket the balanced map of all the shards puts elsewhere is copied, frozen on its
old shard (its writes get 503 for that while), copied again, and switched in the map;
once every replica and worker routes by the map of the last switch, the moved buckets
are deleted from their old shards. Add with --add-only first, then start the replicas
and the worker with every shard's URL (the new one last), then move: nothing moves
until every running replica and worker routes by the map with the added shard, and
after --readers-wait the command stops naming those that do not. Run again with the
same shards (the added one now in --db, or again as --add) to finish a run that was
cut short.

Flags:
`

// reshardArgs is shop reshard's command line.
type reshardArgs struct {
	shards      []string
	add         []string
	first, last shard.Bucket
	readersWait time.Duration
	addOnly     bool
}

func parseReshard(args []string, stderr io.Writer) (*reshardArgs, error) {
	var dbs, adds urlList
	r := &reshardArgs{last: shard.Buckets - 1}
	fs := flag.NewFlagSet("shop reshard", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&dbs, "db", "PostgreSQL `URL` of a shard the service runs on, repeated in shard order")
	fs.Var(&adds, "add", "PostgreSQL `URL` of a shard to add (repeatable); may be left out to finish moving to shards added before")
	buckets := fs.String("buckets", fmt.Sprintf("0-%d", shard.Buckets-1), "the buckets to move, FIRST-LAST")
	fs.BoolVar(&r.addOnly, "add-only", false, "only add the shards and grow the map; move nothing (then restart the replicas and the worker with every shard's --db, and run again)")
	fs.DurationVar(&r.readersWait, "readers-wait", reshard.DefaultReadersWait, "how long to wait for every replica and worker to route by the new map, before moving and before deleting the old copies")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, reshardHelp)
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, fmt.Errorf("reshard: %v (see shop reshard --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("reshard: unexpected argument %q (see shop reshard --help)", fs.Arg(0))
	}
	if len(dbs.urls) == 0 {
		return nil, errors.New("reshard: --db is required, once per shard the service runs on, shard 1 first")
	}
	for _, flagURLs := range []struct {
		name string
		urls []string
	}{{"db", dbs.urls}, {"add", adds.urls}} {
		for _, u := range flagURLs.urls {
			if err := parsePostgresURL(flagURLs.name, u); err != nil {
				return nil, fmt.Errorf("reshard: %w", err)
			}
		}
	}
	seen := map[string]bool{}
	for _, u := range append(slices.Clone(dbs.urls), adds.urls...) {
		if seen[u] {
			return nil, fmt.Errorf("reshard: %s is given twice: each shard is one database", redactURL(u))
		}
		seen[u] = true
	}
	if n := len(dbs.urls) + len(adds.urls); n > shard.MaxShards {
		return nil, fmt.Errorf("reshard: %d shards, at most %d", n, shard.MaxShards)
	}
	var err error
	if r.first, r.last, err = parseBuckets(*buckets); err != nil {
		return nil, err
	}
	if r.readersWait <= 0 {
		return nil, fmt.Errorf("reshard: --readers-wait must be positive, got %s", r.readersWait)
	}
	r.shards, r.add = dbs.urls, adds.urls
	return r, nil
}

// parseBuckets reads FIRST-LAST (or one bucket).
func parseBuckets(v string) (first, last shard.Bucket, err error) {
	lo, hi, isRange := strings.Cut(v, "-")
	if !isRange {
		hi = lo
	}
	a, errA := strconv.Atoi(lo)
	b, errB := strconv.Atoi(hi)
	if errA != nil || errB != nil || a < 0 || a > b || b >= shard.Buckets {
		return 0, 0, fmt.Errorf("reshard: --buckets must be FIRST-LAST with 0 <= FIRST <= LAST <= %d, got %q", shard.Buckets-1, v)
	}
	return shard.Bucket(a), shard.Bucket(b), nil // #nosec G115 -- checked 0..1023
}

// reshardAfter, when set, is called after each step of a bucket's move
// (reshard.Mover.After): an error stops the command there, as a kill
// would (tests).
var reshardAfter func(b shard.Bucket, s reshard.Step) error

// runReshard is `shop reshard`: the databases opened (the added ones
// migrated) and the move run by shop/reshard, one line per bucket moved.
func runReshard(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	r, err := parseReshard(args, stdout)
	if err != nil {
		return badInput(err)
	}
	set, err := backend.OpenForReshard(ctx, backend.Config{ShardURLs: r.shards, Jobs: jobs.Config{Logger: log}}, r.add)
	if err != nil {
		return fmt.Errorf("reshard: %w", err)
	}
	defer closeAll(set)
	mover := &reshard.Mover{DB: set, Log: log, CatchUpPasses: 3, ReadersWait: r.readersWait, After: reshardAfter}
	if r.addOnly {
		m, err := mover.AddShard(ctx)
		if err != nil {
			return fmt.Errorf("reshard: %w", err)
		}
		fmt.Fprintf(stdout, "map: %d shards, %v buckets each; nothing moved: restart the replicas and the worker with every shard's --db, then run shop reshard again without --add-only\n", m.Shards(), m.Counts())
		return nil
	}
	var frozen []time.Duration
	report, err := mover.Run(ctx, r.first, r.last, func(m reshard.Move) {
		frozen = append(frozen, m.Frozen)
		resumed := ""
		if m.Resume != "" {
			resumed = " (resumed: " + m.Resume + ")"
		}
		fmt.Fprintf(stdout, "bucket %d: shard %d -> %d, %d rows written, writes refused for %s%s\n",
			m.Bucket, m.From+1, m.To+1, m.Rows, m.Frozen.Round(time.Millisecond), resumed)
	})
	if err != nil {
		return fmt.Errorf("reshard: %w (run the same command again to finish)", err)
	}
	fmt.Fprintf(stdout, "%d buckets moved; map: %d shards; %d rows deleted from the old shards\n", len(report.Moves), len(set), report.Forgotten)
	if len(frozen) > 0 {
		slices.Sort(frozen)
		fmt.Fprintf(stdout, "writes refused per bucket: median %s, max %s\n", frozen[len(frozen)/2].Round(time.Millisecond), frozen[len(frozen)-1].Round(time.Millisecond))
	}
	return nil
}

func closeAll(set postgres.ShardSet) {
	for _, db := range set {
		db.Close()
	}
}
