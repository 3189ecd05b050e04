package resilience

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	bp := m.Backpressure(next, Confirmations{Backlog: func(context.Context, int) (Backlog, error) { return now, readErr }}, BackpressureConfig{MaxWaiting: 100, MaxAge: time.Second})
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

// Each shard is judged by its own queue: a backlog past a bound on one
// shard refuses the checkouts of its sessions only, and a shard whose
// backlog cannot be read refuses nothing. A session whose shard cannot be
// told goes through to the store.
func TestCheckoutIsRefusedOnlyOnTheShardWhoseConfirmationsAreBehind(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	next := &countingOrders{}
	backlogs := []Backlog{{Waiting: 10}, {Waiting: 101}, {OldestAge: 2 * time.Second}}
	readErrs := []error{nil, nil, nil}
	bp := m.Backpressure(next, Confirmations{
		Shards:  3,
		Backlog: func(_ context.Context, k int) (Backlog, error) { return backlogs[k], readErrs[k] },
		ShardOf: func(session int64) (int, error) {
			if session < 0 {
				return 0, errors.New("no such session")
			}
			return int(session % 3), nil
		},
	}, BackpressureConfig{MaxWaiting: 100, MaxAge: time.Second})
	ctx := context.Background()
	bp.Sample(ctx)
	for _, tc := range []struct {
		session int64
		refused bool
	}{
		{0, false}, {3, false}, {1, true}, {4, true}, {2, true}, {-1, false},
	} {
		_, _, err := bp.PlaceOrder(ctx, shop.PlaceOrder{SessionID: tc.session})
		refused := shop.ErrorCode(err) == shop.EUNAVAILABLE
		if refused != tc.refused {
			t.Errorf("session %d (shard %d): checkout %v, want refused=%v", tc.session, tc.session%3+1, err, tc.refused)
		}
		if refused && !strings.Contains(err.Error(), fmt.Sprintf("on shard %d", tc.session%3+1)) {
			t.Errorf("session %d: refusal %q does not name its shard", tc.session, err)
		}
	}
	readErrs[1] = context.DeadlineExceeded
	bp.Sample(ctx)
	if _, _, err := bp.PlaceOrder(ctx, shop.PlaceOrder{SessionID: 1}); err != nil {
		t.Errorf("shard 2's backlog unread: checkout %v, want it through", err)
	}
	if _, _, err := bp.PlaceOrder(ctx, shop.PlaceOrder{SessionID: 2}); shop.ErrorCode(err) != shop.EUNAVAILABLE {
		t.Errorf("shard 3 still behind: checkout %v, want refused", err)
	}
}

// A replica that takes no checkouts reads no backlog: after the first
// sample, Run reads the backlogs only in a period in which a checkout came
// (the old Run read them every period, four statements a second per shard
// on each replica of an idle cluster). The test drives the periods and
// waits for Run to be done with each, so that no checkout falls into a
// period Run is still sampling.
func TestBacklogIsReadOnlyWhileCheckoutsCome(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	reads := 0
	bp := m.Backpressure(&countingOrders{}, Confirmations{Backlog: func(context.Context, int) (Backlog, error) {
		reads++
		return Backlog{}, nil
	}}, BackpressureConfig{})
	ticks, tickDone := make(chan time.Time), make(chan struct{})
	bp.ticks, bp.tickDone = ticks, tickDone
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); bp.Run(ctx) }()
	period := func() { ticks <- time.Time{}; <-tickDone }
	for range 4 {
		period()
	}
	if reads != 1 {
		t.Errorf("%d backlog reads after 4 periods without a checkout; want 1 (the first sample)", reads)
	}
	for range 2 {
		if _, _, err := bp.PlaceOrder(ctx, shop.PlaceOrder{}); err != nil {
			t.Fatal(err)
		}
	}
	period() // two checkouts in this period: one sample
	period()
	period()
	cancel()
	<-done
	if reads != 2 {
		t.Errorf("%d backlog reads after a period with checkouts and two without; want 2", reads)
	}
}

// A replica reads only the backlogs of the shards it took checkouts for
// in a period: on S shards the old Run read every shard's at each period
// with a checkout, so each shard's reads grew with the replicas (4 a
// second from each). A session whose shard cannot be told wants none.
func TestBacklogIsReadOnlyOnTheShardsCheckoutsCameFor(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	reads := make([]int, 3)
	readsCh := make(chan int, 3)
	bp := m.Backpressure(&countingOrders{}, Confirmations{
		Shards: 3,
		Backlog: func(_ context.Context, k int) (Backlog, error) {
			readsCh <- k
			return Backlog{}, nil
		},
		ShardOf: func(session int64) (int, error) {
			if session < 0 {
				return 0, errors.New("no such session")
			}
			return int(session % 3), nil
		},
	}, BackpressureConfig{})
	ticks, tickDone := make(chan time.Time), make(chan struct{})
	bp.ticks, bp.tickDone = ticks, tickDone
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); bp.Run(ctx) }()
	period := func() {
		ticks <- time.Time{}
		<-tickDone
		for len(readsCh) > 0 {
			reads[<-readsCh]++
		}
	}
	period() // the first sample, every shard, then a period without checkouts
	for _, tc := range []struct {
		sessions []int64
		want     []int // each shard's reads in the period
	}{
		{[]int64{1, 4}, []int{0, 1, 0}},
		{[]int64{0, 2, 5}, []int{1, 0, 1}},
		{[]int64{-1}, []int{0, 0, 0}},
		{nil, []int{0, 0, 0}},
	} {
		before := append([]int(nil), reads...)
		for _, s := range tc.sessions {
			if _, _, err := bp.PlaceOrder(ctx, shop.PlaceOrder{SessionID: s}); err != nil {
				t.Fatal(err)
			}
		}
		period()
		for k := range reads {
			if got := reads[k] - before[k]; got != tc.want[k] {
				t.Errorf("checkouts of sessions %v: shard %d's backlog read %d times in the period, want %d", tc.sessions, k+1, got, tc.want[k])
			}
		}
	}
	cancel()
	<-done
}
