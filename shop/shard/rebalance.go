package shard

import (
	"cmp"
	"slices"
)

// QuotaMove is Units of an item's quota (escrow, docs/sharding.md) to
// move from shard From to shard To (from 0).
type QuotaMove struct {
	From, To int
	Units    int64
}

// DemandWeight is the part of an item's stock the rebalancer spreads in
// proportion to the shards' recent sales; the rest is spread evenly, so a
// shard that sold nothing lately keeps some quota and its next sale does
// not have to borrow.
const DemandWeight = 0.75

// LowWater is how far below its target a shard's quota must be before
// quota is moved to it: a move costs a commit on two shards, so a shard a
// little short is left to sell (or borrow) rather than topped up every
// round.
const LowWater = 0.75

// DemandPrior is the demand, in units, each shard is taken to have before
// its sales are counted: an item's share of demand is a shard's sales
// plus DemandPrior over all sales plus DemandPrior a shard. Without it
// one sale was a trend: an item sold once on shard 1 and not on shard 2
// had 7/8 of its stock sent to shard 1, and its next sale on shard 2 sent
// most of it back. Under the shop journey's evenly spread checkouts that
// made about one transfer a checkout (159 transfers of 384,000 units for
// 176 orders in 30 s on two shards), each a commit on two shards and a
// lock on the item's row the checkouts sell from. With it, from even
// quotas, a shard needs more than 12 units sold against none, or about
// three times another's sales once they are many, before quota moves
// its way (LowWater).
const DemandPrior = 8

// RebalanceTargets is each shard's target quota of an item whose quotas
// are quota and whose recent demand is demand (the same shards, in the
// same order): the total spread DemandWeight by demand (each shard's
// counted from DemandPrior) and the rest evenly. With no demand at all
// there is nothing to go by, and the targets are nil.
func RebalanceTargets(quota []int64, demand []float64) []float64 {
	var total int64
	var sum float64
	for k := range quota {
		total += quota[k]
		sum += max(demand[k], 0)
	}
	if total <= 0 || sum <= 0 {
		return nil
	}
	n := float64(len(quota))
	targets := make([]float64, len(quota))
	for k := range quota {
		share := (max(demand[k], 0) + DemandPrior) / (sum + n*DemandPrior)
		targets[k] = float64(total) * (DemandWeight*share + (1-DemandWeight)/n)
	}
	return targets
}

// PlanRebalance is the moves that bring every shard whose quota is below
// LowWater of its target (RebalanceTargets) up to it, taken from the
// shards above their targets, the largest surplus first, never taking a
// donor below its own target. The moves keep the total: they only say
// where the units go.
func PlanRebalance(quota []int64, demand []float64) []QuotaMove {
	targets := RebalanceTargets(quota, demand)
	if targets == nil {
		return nil
	}
	type gap struct {
		shard int
		units int64
	}
	var short, spare []gap
	for k, t := range targets {
		switch q := float64(quota[k]); {
		case q < t*LowWater && int64(t-q) >= 1:
			short = append(short, gap{k, int64(t - q)})
		case int64(q-t) >= 1:
			spare = append(spare, gap{k, int64(q - t)})
		}
	}
	largestFirst := func(a, b gap) int { return cmp.Or(cmp.Compare(b.units, a.units), cmp.Compare(a.shard, b.shard)) }
	slices.SortFunc(short, largestFirst)
	slices.SortFunc(spare, largestFirst)
	var moves []QuotaMove
	for _, r := range short {
		for i := range spare {
			if r.units == 0 {
				break
			}
			n := min(r.units, spare[i].units)
			if n == 0 {
				continue
			}
			moves = append(moves, QuotaMove{From: spare[i].shard, To: r.shard, Units: n})
			spare[i].units -= n
			r.units -= n
		}
	}
	return moves
}
