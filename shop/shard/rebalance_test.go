package shard

import (
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
		// Targets 225, 22.5, 22.5: shard 0 is short by 155, the others
		// spare 77 each.
		{"all demand on one shard", []int64{70, 100, 100}, []float64{30, 0, 0},
			[]QuotaMove{{From: 1, To: 0, Units: 77}, {From: 2, To: 0, Units: 77}}},
		// Targets 60 and 60: even demand keeps even quotas.
		{"even demand, even quotas", []int64{60, 60}, []float64{10, 10}, nil},
		// Targets 80 and 40: shard 1 has 45, above LowWater of 40 but
		// 5 over, and shard 0 has 75, not below 60: no move.
		{"a little off is left alone", []int64{75, 45}, []float64{50, 10}, nil},
		// Targets 16.25, 16.25, 27.5 (60 units, 1/4 spread evenly and
		// 3/4 by demand 1:1:2): shard 2 is short by 22, shard 0 spares 23
		// and shard 1 none.
		{"the largest surplus gives first", []int64{40, 15, 5}, []float64{1, 1, 2},
			[]QuotaMove{{From: 0, To: 2, Units: 22}}},
		// Targets 65, 5, 5, 5: shard 0 is short by 35 and shard 2 by 2;
		// shard 3 spares 30 and shard 1 spares 7.
		{"two donors for two receivers", []int64{30, 12, 3, 35}, []float64{5, 0, 0, 0},
			[]QuotaMove{{From: 3, To: 0, Units: 30}, {From: 1, To: 0, Units: 5}, {From: 1, To: 2, Units: 2}}},
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
