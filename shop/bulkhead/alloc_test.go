//go:build !race

// The race detector instruments allocations: counts taken under it say
// nothing of the build that runs.

package bulkhead

import (
	"errors"
	"testing"
	"time"
)

// Only a request that queues allocates: a refusal, which a replica at ten
// times its capacity makes nine times for each request it serves, and a
// slot granted at once do not. Before, every Enter made a waiter and its
// two channels first (3 allocations), whatever became of the request.
func TestOnlyAQueuedRequestAllocates(t *testing.T) {
	free := New(Config{Slots: 1, Classes: 3, Sustained: -1})
	grant := func() {
		w, err := free.Enter(1, time.Second, t0)
		if err != nil || !granted(w) {
			t.Fatalf("a free slot: err %v; want it granted at once", err)
		}
		free.Release(time.Millisecond)
	}
	full := New(Config{Slots: 1, Classes: 3, Sustained: -1})
	fill(t, full)
	full.Release(time.Second) // a second's service time: no budget below it is met
	fill(t, full)
	refuse := func() {
		if _, err := full.Enter(1, time.Millisecond, t0); !errors.Is(err, ErrFull) {
			t.Fatalf("a full bulkhead with a second's service time and a millisecond's budget: %v, want ErrFull", err)
		}
	}
	for _, tt := range []struct {
		name string
		f    func()
	}{{"granted at once", grant}, {"refused", refuse}} {
		if n := testing.AllocsPerRun(100, tt.f); n != 0 {
			t.Errorf("%s: %.0f allocations, want 0", tt.name, n)
		}
	}
	// A queued request still gets a waiter of its own.
	w, err := full.Enter(1, time.Hour, t0)
	if err != nil || granted(w) || w.MaxWait != time.Hour-time.Second {
		t.Fatalf("a request with an hour's budget: err %v, granted %v, MaxWait %v; want it queued for up to 59 min 59 s", err, granted(w), w.MaxWait)
	}
	if other, _ := full.Enter(1, time.Hour, t0); other == w {
		t.Fatal("two queued requests were given the same waiter")
	}
}
