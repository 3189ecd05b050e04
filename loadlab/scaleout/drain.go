package scaleout

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/perfscale/perfscale/loadlab/measure"
)

// Draining: a probe over the capacity leaves a queue behind it, and a
// probe started on that queue measures it, not its own rate (at 2
// replicas of a known-linear system the probes after an overload saw p99s
// of 1 to 4 s at rates the system could serve). Before each probe the
// target gets an idle gap, then one user's latency must be back near what
// it was on the fresh count.
const (
	DefaultDrainGap     = 500 * time.Millisecond
	DefaultDrainTimeout = 30 * time.Second
	// baselineRequests one-user requests give the count's own latency;
	// drainRequests each check.
	baselineRequests = 20
	drainRequests    = 5
	// A check passes with one user's median within drainFactor × the
	// baseline plus drainSlack (a busy machine's scheduling noise).
	drainFactor = 2
	drainSlack  = 10 * time.Millisecond
)

// oneUser sends requests one after another and returns their step.
type oneUser func(ctx context.Context, requests int64) (measure.Step, error)

// drainer waits until the target has worked off what the last probe left.
type drainer struct {
	check    oneUser
	baseline time.Duration // one user's median latency on the fresh count
	// errorsAllowed is how many of a check's requests may fail: as many
	// as failed on the fresh count, at its share (none when none did). A
	// target still refusing after an overload (a circuit breaker open on
	// its database, the admission control) answers what it still can,
	// fast (an edge cache's reads), and its median alone looks drained.
	// A 429 Too Many Requests is not counted (see drainErrors).
	errorsAllowed int64
	gap           time.Duration
	timeout       time.Duration
	// sleep waits d or until ctx ends (time.Sleep's context-aware twin;
	// tests count the gaps instead).
	sleep func(ctx context.Context, d time.Duration) error
}

// Drained is what waiting for a drain found.
type Drained struct {
	Waited time.Duration // idle gaps and checks, in all
	Checks int
	P50    time.Duration // one user's median at the last check
	OK     bool          // the last check was within the limit
}

// limit is the one-user median a drained target shows.
func (d *drainer) limit() time.Duration { return drainFactor*d.baseline + drainSlack }

// wait gives the target idle gaps until one user's median is within the
// limit, or the timeout passes (then OK is false and the probe runs on
// what is left: its result carries a warning).
func (d *drainer) wait(ctx context.Context) (Drained, error) {
	start := time.Now()
	var out Drained
	for {
		if err := d.sleep(ctx, d.gap); err != nil {
			return out, err
		}
		if d.check == nil {
			out.OK, out.Waited = true, time.Since(start)
			return out, nil
		}
		s, err := d.check(ctx, drainRequests)
		if err != nil {
			return out, fmt.Errorf("drain check: %w", err)
		}
		out.Checks++
		out.P50 = s.P50
		out.Waited = time.Since(start)
		if s.Requests > s.Errors && drainErrors(s) <= d.errorsAllowed && s.P50 <= d.limit() {
			out.OK = true
			return out, nil
		}
		if out.Waited >= d.timeout {
			return out, nil
		}
	}
}

// allowErrors sets how many of a check's requests may fail from the
// fresh count's one-user steps: the highest share that failed in them.
func (d *drainer) allowErrors(fresh ...measure.Step) {
	share := 0.0
	for _, s := range fresh {
		if s.Requests > 0 {
			share = max(share, float64(drainErrors(s))/float64(s.Requests))
		}
	}
	d.errorsAllowed = int64(math.Ceil(share * drainRequests))
}

// drainErrors are the failed requests of a one-user step that say the
// target is still working off an overload: all but the 429 Too Many
// Requests. A 429 is a rate limit (nginx's per-client one) refusing this
// client's pace, not a queue: a limit that lets in fewer requests an idle
// gap than a check sends refuses the rest of every check, the checks use
// up what each gap lets in, and with them counted every probe waited the
// whole drain timeout (30 s) on a target that had long drained. The
// latency of the answers it let in still judges the drain.
func drainErrors(s measure.Step) int64 {
	return s.Errors - tooManyRequestsIn(s)
}

// sleepCtx waits d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
