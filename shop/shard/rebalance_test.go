package shard

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPlanRebalance(t *testing.T) {
	tests := []struct {
		name   string
		quota  []int64
		demand []float64
		want   []QuotaMove
	}{
		{"no demand: nothing to go by", []int64{70, 100, 100}, []float64{0, 0, 0}, nil},
		{"no stock", []int64{0, 0, 0}, []float64{5, 0, 0}, nil},
		// Shares of demand 38/54, 8/54, 8/54 (DemandPrior 8 each), so
		// targets 165, 52.5, 52.5: shard 0 is short by 95, the others
		// spare 47 each.
		{"all demand on one shard", []int64{70, 100, 100}, []float64{30, 0, 0},
			[]QuotaMove{{From: 1, To: 0, Units: 47}, {From: 2, To: 0, Units: 47}}},
		// Shares 9/17 and 8/17, targets 522 and 478: shard 0 is not below
		// LowWater of its target. Without the prior one sale was a trend
		// (targets 875 and 125: 375 units moved), and the next sale on
		// the other shard sent them back.
		{"one sale is not a trend", []int64{500, 500}, []float64{1, 0}, nil},
		{"three sales against none are not either", []int64{500, 500}, []float64{3, 0}, nil},
		// Shares 48/56 and 8/56, targets 767.9 and 232.1.
		{"a real skew still moves quota", []int64{500, 500}, []float64{40, 0},
			[]QuotaMove{{From: 1, To: 0, Units: 267}}},
		// Targets 60 and 60: even demand keeps even quotas.
		{"even demand, even quotas", []int64{60, 60}, []float64{10, 10}, nil},
		// Targets 80 and 40: shard 1 has 45, above LowWater of 40 but
		// 5 over, and shard 0 has 75, not below 60: no move.
		{"a little off is left alone", []int64{75, 45}, []float64{50, 10}, nil},
		// Targets 19.5, 19.5, 21.1 (60 units, 1/4 spread evenly and
		// 3/4 by demand 9:9:10 with the prior): shard 2 is short by 16,
		// shard 0 spares 20 and shard 1 none.
		{"the largest surplus gives first", []int64{40, 15, 5}, []float64{1, 1, 2},
			[]QuotaMove{{From: 0, To: 2, Units: 16}}},
		// Targets 26.1, 18, 18, 18 (demand 13:8:8:8 with the prior):
		// shard 2 is short by 14 and shard 1 by 5; shard 3 spares 17
		// and shard 0 spares 3.
		{"two donors for two receivers", []int64{30, 12, 3, 35}, []float64{5, 0, 0, 0},
			[]QuotaMove{{From: 3, To: 2, Units: 14}, {From: 3, To: 1, Units: 3}, {From: 0, To: 1, Units: 2}}},
		{"one shard", []int64{10}, []float64{3}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanRebalance(tt.quota, tt.demand)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("PlanRebalance(%v, %v) (-want +got):\n%s", tt.quota, tt.demand, diff)
			}
			// Whatever the plan, it keeps the total and takes no donor
			// below zero.
			q := append([]int64(nil), tt.quota...)
			for _, m := range got {
				q[m.From] -= m.Units
				q[m.To] += m.Units
				if q[m.From] < 0 || m.Units <= 0 {
					t.Fatalf("move %+v leaves %v", m, q)
				}
			}
		})
	}
}

// Moves bring the shard with the demand to its target, and no shard's
// quota to below its own.
func FuzzPlanRebalance(f *testing.F) {
	f.Add(int64(70), int64(100), int64(100), 30.0, 0.0, 0.0)
	f.Add(int64(1), int64(0), int64(5), 0.0, 2.5, 1.0)
	f.Fuzz(func(t *testing.T, q0, q1, q2 int64, d0, d1, d2 float64) {
		quota := []int64{q0 % 1e9, q1 % 1e9, q2 % 1e9}
		demand := []float64{d0, d1, d2}
		for i := range quota {
			if quota[i] < 0 || demand[i] != demand[i] || demand[i] > 1e12 || demand[i] < -1e12 {
				t.Skip()
			}
		}
		targets := RebalanceTargets(quota, demand)
		after := append([]int64(nil), quota...)
		for _, m := range PlanRebalance(quota, demand) {
			if m.Units <= 0 || m.From == m.To {
				t.Fatalf("move %+v", m)
			}
			after[m.From] -= m.Units
			after[m.To] += m.Units
		}
		var before, total int64
		for k := range quota {
			before += quota[k]
			total += after[k]
			if after[k] < 0 || (after[k] < quota[k] && float64(after[k]) < targets[k]-1) {
				t.Fatalf("shard %d: %d -> %d, target %.1f", k, quota[k], after[k], targets[k])
			}
		}
		if before != total {
			t.Fatalf("total %d -> %d", before, total)
		}
	})
}

// Evenly spread sales, round after round as the rebalancer sees them
// (demand decayed by RebalanceHalfLife's 30 s over 5 s rounds), move
// little quota: noise in which shard sold an item last is not a trend.
// Before DemandPrior each round moved most of an item's stock after
// any sale (in the cluster, about one transfer a checkout).
func TestEvenSalesMoveLittleQuota(t *testing.T) {
	for _, shards := range []int{2, 4} {
		rng := rand.New(rand.NewPCG(1, uint64(shards)))
		const items, rounds, stock = 200, 60, 5000
		decay := math.Exp2(-5.0 / 30)
		quota := make([][]int64, items)
		demand := make([][]float64, items)
		for i := range quota {
			quota[i] = make([]int64, shards)
			demand[i] = make([]float64, shards)
			for k := range quota[i] {
				quota[i][k] = stock / int64(shards)
			}
		}
		var sold, moved, transfers int64
		for range rounds {
			for i := range quota {
				for k := range demand[i] {
					demand[i][k] *= decay
				}
				// One or two units an item a round, on a shard drawn
				// alike for every sale.
				if k, n := rng.IntN(shards), 1+int64(rng.IntN(2)); quota[i][k] >= n {
					quota[i][k] -= n
					demand[i][k] += float64(n)
					sold += n
				}
				for _, m := range PlanRebalance(quota[i], demand[i]) {
					quota[i][m.From] -= m.Units
					quota[i][m.To] += m.Units
					moved += m.Units
					transfers++
				}
			}
		}
		t.Logf("%d shards: %d units sold, %d transfers moved %d units", shards, sold, transfers, moved)
		if transfers > sold/100 {
			t.Errorf("%d shards: %d transfers (%d units) for %d units sold evenly: want at most one for 100 units sold",
				shards, transfers, moved, sold)
		}
	}
}
