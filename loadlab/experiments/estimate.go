package experiments

import (
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/scaleout"
)

// What an experiment's parts cost on this 2-core machine when it is
// quiet, taken from the quiet runs of 2026-12-06 (docs/experiments.md):
// Estimate adds them up from an experiment's settings, so a list's
// length is known before it runs. They are bounds a little above what
// those runs took, not measurements.
const (
	// estServe: an embedded shop started (seeded, migrated) and stopped.
	estServe = 3 * time.Second
	// estUp: a cluster (scripts/cluster.sh up, then down) at one count.
	// global-lock-replicas took 27 s for four counts of 5 s of load.
	estUp = 6 * time.Second
	// estRequest: one user's request in a baseline, the warm-up's
	// included; sync-mail's 50 ms mails are on about one request in
	// eleven of the journey (9 s for its 3,060 requests).
	estRequest = 5 * time.Millisecond
	// estBaselineWarmUp: the requests of each system's warm-up.
	estBaselineWarmUp = 30
	// estDiagnoseBaseline: diagnose's one-user baseline (at most 100
	// requests, bounded at 10 s; about a second on a quiet machine).
	estDiagnoseBaseline = 2 * time.Second
	// estProbes: the probes of a capacity search at one count, its
	// default bound (scaleout's MaxProbes), each followed by a drain.
	estProbes     = 16
	estProbeDrain = 1 * time.Second
)

// Estimate is how long the experiment takes on a quiet machine, from its
// settings (zero for one that waits); a busy machine takes longer.
func (e Experiment) Estimate() time.Duration {
	if e.Waits != "" {
		return 0
	}
	sides := time.Duration(2)
	switch e.Measure {
	case MeasureBaseline:
		start := estServe
		if e.Without != nil && e.Without.Up != "" {
			start = estUp
		}
		return sides*start + sides*time.Duration(e.Requests+estBaselineWarmUp)*estRequest
	case MeasureDiagnose:
		ramp := time.Duration(len(diagnose.Levels(e.MaxConcurrency))) * time.Duration(e.StepDuration)
		return sides * (estServe + estDiagnoseBaseline + ramp)
	case MeasureReplicas:
		count := estUp + time.Duration(e.Warmup) + time.Duration(e.StepDuration)
		return sides * time.Duration(len(e.Replicas)) * count
	case MeasureScaleout:
		return sides * (time.Duration(len(e.Replicas))*e.searchAtOneCount() + e.usersWarmUp())
	case MeasureVertical:
		// Out at each count, up at each size: one count is both.
		return time.Duration(len(e.Replicas)+len(e.CPUs))*e.searchAtOneCount() + e.usersWarmUp()
	}
	return 0
}

// usersWarmUp is what a pool of users adds to a search's first count:
// its warm-up, at half scaleout's first rate, lasts until every user has
// made its session (scaleout's warmUpFor), instead of one probe. Later
// counts warm up at half their first guess, fast enough for a probe's
// length to do.
func (e Experiment) usersWarmUp() time.Duration {
	if e.Users <= 0 {
		return 0
	}
	d := time.Duration(float64(e.Users) * 1.1 / (scaleout.DefaultStartRate / 2) * float64(time.Second)).Round(time.Second)
	return max(0, d-time.Duration(e.ProbeDuration))
}

func (e Experiment) searchAtOneCount() time.Duration {
	return estUp + estProbes*(time.Duration(e.ProbeDuration)+estProbeDrain)
}
