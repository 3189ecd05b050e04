package scaleout

import (
	"testing"
	"time"
)

// With a pool of users the warm-up sends a request for every user's
// set-up and a tenth more, so no counted probe makes a session.
func TestWarmUpMakesEveryUserOfThePool(t *testing.T) {
	for _, tc := range []struct {
		users int
		warm  float64
		want  time.Duration
	}{
		{0, 50, 3 * time.Second},    // no pool: a probe's length
		{512, 50, 11 * time.Second}, // 563 requests at 50 req/s
		{100, 400, 3 * time.Second}, // 110 requests fit in a probe
	} {
		got := warmUpFor(Config{ProbeDuration: 3 * time.Second, Users: tc.users}, tc.warm)
		if got != tc.want {
			t.Errorf("%d users at %g req/s: warm-up %v, want %v", tc.users, tc.warm, got, tc.want)
		}
		if tc.users > 0 && got.Seconds()*tc.warm < float64(tc.users) {
			t.Errorf("%d users at %g req/s: %v sends fewer requests than users", tc.users, tc.warm, got)
		}
	}
}
