package load_test

import (
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"2", 2 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{"99999999999999999", time.Hour}, // bounded, not overflowed
		{"Sun, 06 Dec 2026 12:00:30 GMT", 30 * time.Second},
		{"Sun, 06 Dec 2026 11:00:00 GMT", 0}, // past
		{"Mon, 07 Dec 2026 12:00:00 GMT", time.Hour},
	} {
		if got := load.RetryAfter(tc.header, now); got != tc.want {
			t.Errorf("Retry-After %q: %v, want %v", tc.header, got, tc.want)
		}
	}
}
