package sharded_test

import (
	"context"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop/shard"
	"github.com/perfscale/perfscale/shop/sharded"
)

// homeEscrow is shard 1's map and readers: no map stored, and each
// report counted, the ones in failing refused.
type homeEscrow struct {
	sharded.Escrow // nil: only the map's calls are made
	loads, stopAt  int
	stop           context.CancelFunc
	reports        []int // the load after which each report came (0: before any)
	failing        map[int]bool
}

func (h *homeEscrow) ShardMap(context.Context) (shard.StoredMap, bool, error) {
	if h.loads++; h.loads == h.stopAt {
		h.stop()
	}
	return shard.StoredMap{}, false, nil
}

func (h *homeEscrow) ReportMapEpoch(context.Context, string, int64) error {
	if h.failing[h.loads] {
		return context.DeadlineExceeded
	}
	h.reports = append(h.reports, h.loads)
	return nil
}

// An unchanged map's epoch is reported every MapReportEvery reloads, not
// at each (a write on shard 1 from every process every second); a report
// that failed is made again at the next reload. On the old code every
// reload reported.
func TestAnUnchangedMapsEpochIsReportedEveryFewReloads(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failing map[int]bool
		want    []int
	}{
		{"every report taken", nil, []int{0, 3, 6, 9, 12}},
		{"the first refused", map[int]bool{0: true}, []int{1, 4, 7, 10}},
		{"the one at 6 refused", map[int]bool{6: true}, []int{0, 3, 7, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			h := &homeEscrow{stopAt: 12, stop: stop, failing: tc.failing}
			s, err := sharded.New([]sharded.Shard{{Escrow: h}, {}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			s.RunMapReload(ctx, time.Millisecond) // returns once the 12th load stopped it
			if len(h.reports) != len(tc.want) {
				t.Fatalf("reports after loads %v in %d loads, want after %v", h.reports, h.loads, tc.want)
			}
			for i := range tc.want {
				if h.reports[i] != tc.want[i] {
					t.Fatalf("reports after loads %v in %d loads, want after %v", h.reports, h.loads, tc.want)
				}
			}
		})
	}
}
