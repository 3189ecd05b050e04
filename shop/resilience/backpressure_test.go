package resilience

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/perfscale/perfscale/shop"
)

type countingOrders struct {
	shop.Ordering
	placed int
}

func (c *countingOrders) PlaceOrder(context.Context, shop.PlaceOrder) (*shop.Order, bool, error) {
	c.placed++
	return &shop.Order{ID: int64(c.placed)}, true, nil
}

// Past either bound of the confirmation backlog (jobs waiting, or the
// oldest's wait), a checkout is refused as unavailable before it reaches
// the desk; once the workers catch up, checkouts go through again. A
// backlog that cannot be read refuses nothing.
func TestCheckoutIsRefusedWhileConfirmationsAreBehind(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	next := &countingOrders{}
	var now Backlog
	var readErr error
	bp := m.Backpressure(next, func(context.Context) (Backlog, error) { return now, readErr }, BackpressureConfig{MaxWaiting: 100, MaxAge: time.Second})
	ctx := context.Background()
	for _, tc := range []struct {
		backlog Backlog
		err     error
		refused bool
	}{
		{Backlog{Waiting: 100, OldestAge: time.Second}, nil, false},
		{Backlog{Waiting: 101}, nil, true},
		{Backlog{Waiting: 3, OldestAge: 1100 * time.Millisecond}, nil, true},
		{Backlog{Waiting: 500}, context.DeadlineExceeded, false},
		{Backlog{Waiting: 10, OldestAge: 10 * time.Millisecond}, nil, false},
	} {
		now, readErr = tc.backlog, tc.err
		bp.Sample(ctx)
		before := next.placed
		_, _, err := bp.PlaceOrder(ctx, shop.PlaceOrder{})
		refused := shop.ErrorCode(err) == shop.EUNAVAILABLE
		if refused != tc.refused || (refused && next.placed != before) {
			t.Errorf("backlog %+v (read error %v): checkout %v after %d desk calls, want refused=%v", tc.backlog, tc.err, err, next.placed-before, tc.refused)
		}
	}
	if n := testutil.ToFloat64(bp.m.refused.WithLabelValues("backlog")); n != 2 {
		t.Errorf("refusals counted %v, want 2", n)
	}
}
