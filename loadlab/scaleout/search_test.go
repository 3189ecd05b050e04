package scaleout

import (
	"context"
	"math"
	"testing"
	"time"
)

// A target whose p99 is fine below a known capacity and over the SLO
// above it: the search must land within its precision below it.
func TestSearchFindsAKnownCapacity(t *testing.T) {
	for _, capacity := range []float64{37, 250, 1000, 7300} {
		for _, start := range []float64{10, 100, 20000} {
			s := Search{SLO: 50 * time.Millisecond, Start: start}
			probe := func(_ context.Context, rate float64) (Probe, error) {
				p := Probe{Rate: rate, ThroughputRPS: math.Min(rate, capacity), Requests: 1000, P99: 10 * time.Millisecond, SentShare: 1}
				if rate > capacity {
					p.P99 = time.Second
				}
				return p, nil
			}
			c, err := s.Run(context.Background(), probe)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Found || c.RPS > capacity || c.RPS < capacity/1.05 || len(c.Probes) > 16 {
				t.Errorf("capacity %v from %v: found %v (%v) in %d probes", capacity, start, c.RPS, c.Found, len(c.Probes))
			}
		}
	}
}

func TestSearchFailsOnErrorsAndStopsAtTheGenerator(t *testing.T) {
	s := Search{SLO: 50 * time.Millisecond, Start: 100}
	// 0.2% errors above 300 req/s: over the 0.1% allowed.
	c, _ := s.Run(context.Background(), func(_ context.Context, rate float64) (Probe, error) {
		p := Probe{Rate: rate, ThroughputRPS: rate, Requests: 10000, P99: time.Millisecond, SentShare: 1}
		if rate > 300 {
			p.Errors = 20
		}
		return p, nil
	})
	if c.RPS > 300 || c.RPS < 285 {
		t.Fatalf("with errors above 300 req/s, capacity %v", c.RPS)
	}
	// The generator gives out at 800 req/s: the search stops and says so.
	c, _ = s.Run(context.Background(), func(_ context.Context, rate float64) (Probe, error) {
		p := Probe{Rate: rate, ThroughputRPS: rate, Requests: 10000, P99: time.Millisecond, SentShare: 1}
		if rate >= 800 {
			p.GeneratorSaturated, p.SaturationReasons, p.SentShare = true, []string{"sent 90% of the requests the rate called for"}, 0.9
		}
		return p, nil
	})
	if !c.GeneratorLimited || c.RPS < 760 || c.RPS >= 800 || len(c.GeneratorReasons) != 1 {
		t.Fatalf("generator limit not reported: %+v", c)
	}
	// Requests sent late while the target still met the SLO at the rate:
	// the probe stands (the lateness counted against the target).
	c, _ = s.Run(context.Background(), func(_ context.Context, rate float64) (Probe, error) {
		p := Probe{Rate: rate, ThroughputRPS: rate, Requests: 10000, P99: time.Millisecond, SentShare: 1, SendDelayP99: 20 * time.Millisecond,
			GeneratorSaturated: true, SaturationReasons: []string{"5% of requests were dispatched more than 1ms late"}}
		if rate > 500 {
			// Far over the SLO: more than the generator's 20 ms could explain.
			p.P99 = time.Second
		}
		return p, nil
	})
	if c.GeneratorLimited || c.RPS < 480 || c.RPS > 500 {
		t.Fatalf("late but passing probes: %+v", c)
	}
	// Over the SLO by less than the generator's own delay: inconclusive,
	// so the generator is the limit.
	c, _ = s.Run(context.Background(), func(_ context.Context, rate float64) (Probe, error) {
		p := Probe{Rate: rate, ThroughputRPS: rate, Requests: 10000, P99: time.Millisecond, SentShare: 1}
		if rate > 500 {
			p.P99, p.SendDelayP99, p.GeneratorSaturated = 60*time.Millisecond, 30*time.Millisecond, true
		}
		return p, nil
	})
	if !c.GeneratorLimited {
		t.Fatalf("a failure the generator's delay explains was blamed on the target: %+v", c)
	}
	// Nothing passes at all: capacity 0, not found.
	c, _ = s.Run(context.Background(), func(_ context.Context, rate float64) (Probe, error) {
		return Probe{Rate: rate, Requests: 10, P99: time.Second}, nil
	})
	if c.Found || c.RPS != 0 {
		t.Fatalf("a target that never meets the SLO got capacity %v", c.RPS)
	}
}

// The first probe of a count runs at a guess near the capacity (90% of
// linear from the count before): a noisy moment there is probed once
// more instead of bounding the search (at 2 replicas of the known-linear
// system a first probe at 167 req/s met one, and the count came out at
// 163 of 186).
func TestSearchConfirmsAFailedFirstProbe(t *testing.T) {
	const capacity = 186.0
	s := Search{SLO: 200 * time.Millisecond, Start: 167, Factor: 1.5}
	probes := 0
	c, err := s.Run(context.Background(), func(_ context.Context, rate float64) (Probe, error) {
		probes++
		p := Probe{Rate: rate, ThroughputRPS: math.Min(rate, capacity), Requests: 1000, P99: 20 * time.Millisecond, SentShare: 1}
		if rate > capacity || probes == 1 { // the first probe meets a noisy moment
			p.P99 = 420 * time.Millisecond
		}
		return p, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Found || c.RPS < capacity/1.05 || c.RPS > capacity {
		t.Fatalf("capacity %.0f (found %v) in %d probes, want %.0f within 5%%", c.RPS, c.Found, len(c.Probes), capacity)
	}
}

// A probe right after an overload runs in what the overload left (the
// target's backlog, its jobs still draining), so stepping down from an
// overload, the first rate under the capacity fails once: confirmed, it
// passes and the bracket holds the capacity. Unconfirmed, it bounded the
// search below the capacity (a 4-shard cluster: 1,194 and 796 req/s
// failed, then 531 with p99 343 ms, and the count came out at 517).
func TestSearchConfirmsAFailureRightAfterAnOverload(t *testing.T) {
	const capacity = 600.0
	s := Search{SLO: 100 * time.Millisecond, Start: 1200, Factor: 1.5}
	previous := 0.0
	c, err := s.Run(context.Background(), func(_ context.Context, rate float64) (Probe, error) {
		p := Probe{Rate: rate, ThroughputRPS: math.Min(rate, capacity), Requests: 1000, P99: 10 * time.Millisecond, SentShare: 1}
		if rate > capacity || previous > capacity { // over it, or draining an overload
			p.P99 = 400 * time.Millisecond
		}
		previous = rate
		return p, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Found || c.RPS < capacity/1.05 || c.RPS > capacity {
		t.Fatalf("capacity %.0f (found %v) in %d probes, want %.0f within 5%%", c.RPS, c.Found, len(c.Probes), capacity)
	}
}
