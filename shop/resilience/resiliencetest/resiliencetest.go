// Package resiliencetest lets a test wait for a guard's circuit breaker to
// reach a state (open, half-open, closed), told by the breaker's own hook
// (resilience.Config.OnState), instead of waiting for time to pass.
package resiliencetest

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// States records the states a breaker moved to, in order.
type States struct {
	mu      sync.Mutex
	seen    []string
	next    int           // seen[:next] were waited for already
	changed chan struct{} // closed and replaced at each state
}

// NewStates returns an empty record; give its Record to
// resilience.Config.OnState.
func NewStates() *States { return &States{changed: make(chan struct{})} }

// Record notes a state; it never blocks the breaker.
func (s *States) Record(state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, state)
	close(s.changed)
	s.changed = make(chan struct{})
}

// Wait returns once the breaker has moved to want since the last Wait
// returned, and fails t if it has not within timeout (a bound on a broken
// test, not a measure), saying which states it saw.
func (s *States) Wait(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		for i := s.next; i < len(s.seen); i++ {
			if s.seen[i] == want {
				s.next = i + 1
				s.mu.Unlock()
				return
			}
		}
		changed, seen := s.changed, strings.Join(s.seen, ", ")
		s.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("the breaker did not become %s within %v (states so far: %s)", want, timeout, seen)
		}
	}
}

// Seen is every state recorded so far.
func (s *States) Seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// Value is the value of the counter or gauge name whose labels include
// every name=value pair of labels, in what reg gathers now; 0 if there is
// none.
func Value(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}
