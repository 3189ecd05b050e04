package httpapi

import (
	"testing"
	"time"
)

// The sampler lets a burst through, holds back the rest while the rate
// allows none, and the next line it lets through says how many it held.
func TestSampledLogHoldsBackPastItsRateAndSaysHowMany(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newSampledLog(2, 3, func() time.Time { return now })
	for k := range 3 {
		if held, ok := l.allow(); !ok || held != 0 {
			t.Fatalf("line %d of the burst: allowed %v, held %d; want allowed, 0 held", k+1, ok, held)
		}
	}
	for k := range 7 {
		if _, ok := l.allow(); ok {
			t.Fatalf("line %d past the burst was let through at the same instant", k+1)
		}
	}
	now = now.Add(500 * time.Millisecond) // one line's worth at 2 a second
	if held, ok := l.allow(); !ok || held != 7 {
		t.Fatalf("after half a second: allowed %v, held %d; want allowed, 7 held", ok, held)
	}
	if _, ok := l.allow(); ok {
		t.Fatal("a second line was let through within the same half second")
	}
}
