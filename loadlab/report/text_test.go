package report

import (
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
)

func TestRunProgress(t *testing.T) {
	s := load.Snapshot{Elapsed: 3 * time.Second, Requests: 600, Errors: 2, RateRPS: 200, P99: 1500 * time.Microsecond}
	line := RunProgress(s)
	for _, want := range []string{"3s", "200 req/s", "p99 1.50ms", "requests 600", "errors 2"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "SATURATED") {
		t.Errorf("progress line %q: saturated without cause", line)
	}
	s.Saturated = true
	if line := RunProgress(s); !strings.Contains(line, "GENERATOR SATURATED") {
		t.Errorf("progress line %q does not say the generator is saturated", line)
	}
}
