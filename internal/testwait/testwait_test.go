package testwait_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
)

// recorder is a testing.TB whose Fatalf records the message and ends the
// goroutine, as the real one does.
type recorder struct {
	testing.TB
	failure string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failure = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// wait runs Eventually on a goroutine of its own (Fatalf ends it) and
// returns the failure it reported, if any.
func wait(t *testing.T, timeout time.Duration, cond func(testing.TB) error) string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testwait.Eventually(r, timeout, func() error { return cond(r) })
	}()
	<-done
	return r.failure
}

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	var calls atomic.Int64
	failure := wait(t, time.Minute, func(testing.TB) error {
		if n := calls.Add(1); n < 3 {
			return fmt.Errorf("call %d", n)
		}
		return nil
	})
	if failure != "" || calls.Load() != 3 {
		t.Fatalf("failure %q after %d calls; want none after 3", failure, calls.Load())
	}
}

func TestEventuallyReportsTheLastStateSeen(t *testing.T) {
	var calls atomic.Int64
	failure := wait(t, 50*time.Millisecond, func(testing.TB) error {
		return fmt.Errorf("%d of 3 replicas ready", calls.Add(1)%3)
	})
	last := fmt.Sprintf("%d of 3 replicas ready", calls.Load()%3)
	if !strings.Contains(failure, last) || !strings.Contains(failure, "50ms") {
		t.Fatalf("failure %q; want it to name the timeout and the last state, %q", failure, last)
	}
}

func TestEventuallyDoesNotSpin(t *testing.T) {
	// Sleeps last at least as long as asked, so a busy machine can only
	// lower the count: polls of 1, 2, 4 ... 64 ms, then 100 ms, fill 300 ms
	// in ten calls. A loop that spun would make thousands.
	var calls atomic.Int64
	wait(t, 300*time.Millisecond, func(testing.TB) error {
		calls.Add(1)
		return errors.New("never")
	})
	if n := calls.Load(); n > 10 {
		t.Fatalf("%d calls in 300 ms; want at most 10", n)
	}
}

func TestTheConditionMayEndTheWait(t *testing.T) {
	calls := 0
	failure := wait(t, time.Minute, func(t testing.TB) error {
		calls++
		t.Fatalf("the server exited")
		return errors.New("still waiting")
	})
	if failure != "the server exited" || calls != 1 {
		t.Fatalf("failure %q after %d calls; want the condition's own, after 1", failure, calls)
	}
}
