package experiments

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
)

// efficiencyDrop: with the setting, efficiency at the top count below
// this share of the system's without it has fallen because of the
// setting.
const efficiencyDrop = 0.75

// judge gives the lab's verdict on measured sides, and whether it is the
// one the claim expects. It does no I/O, so its rules are tested on
// figures.
func judge(res *Result, e Experiment) {
	switch e.Measure {
	case MeasureBaseline:
		res.Verdict, res.Reason = judgeBaseline(e, res.Without, res.With)
	case MeasureDiagnose:
		res.Verdict, res.Reason = judgeDiagnosis(e, res.Without, res.With)
	case MeasureScaleout, MeasureReplicas:
		res.Verdict, res.Reason = judgeScaleout(res.Without, res.With)
	case MeasureVertical:
		res.Verdict, res.Reason = judgeVertical(e, res.With)
	}
	if why := machineBound(res.Without, res.With); why != "" {
		if res.Verdict == VerdictFailsToScaleOut && errorsNoLoadMakes(res.With) {
			// A client error the service gives whatever its load (a
			// session another replica does not know: 401) is no
			// figure the machine's CPU set: the verdict stands.
			res.Reason += "; a count was machine-bound (" + why + "): that bears on the efficiencies, not on errors the load does not make"
		} else {
			// Efficiencies the machine held back compare the machine's
			// CPU, not the setting: no verdict on the claim from them.
			res.Verdict, res.Reason = VerdictMachineBound, "no verdict: the machine, not the system, bounded a count ("+why+"); what the figures would say: "+res.Reason
			return
		}
	}
	warning := untrusted(res.Without, res.With)
	if warning == "" && e.Measure == MeasureReplicas && res.Verdict != VerdictFailsToScaleOut {
		warning = refusedReference(res.Without, res.With)
	}
	if warning != "" {
		// The measurement says its own figures are the machine's: no
		// verdict on the claim from them.
		res.Verdict, res.Reason = VerdictUntrusted, "the measurement flags its own figures ("+warning+"); what they would say: "+res.Reason
		return
	}
	holds := res.Verdict == e.Expected
	res.Holds = &holds
	if !holds {
		res.NotHere = e.NotHere
	}
	if e.Tradeoff != nil {
		res.Tradeoff = tradeoff(*e.Tradeoff, res.Without, res.With)
	}
}

// machineBound is why the machine held back a count of a side (the
// first side's; "" when none).
func machineBound(sides ...*Side) string {
	for _, s := range sides {
		if s != nil && s.MachineBound != "" {
			return s.MachineBound
		}
	}
	return ""
}

// untrusted is the first warning of a side that says its figures are
// not to be trusted ("" when none does).
func untrusted(sides ...*Side) string {
	for _, s := range sides {
		if s == nil {
			continue
		}
		for _, w := range s.Warnings {
			if strings.HasPrefix(w, "not to be trusted") {
				return w
			}
		}
	}
	return ""
}

// refusedReference is why a replicas measure's efficiencies are not to
// be trusted when the count they divide by, 1 replica, was one the
// errors bound on a side ("" when neither was). Efficiency is X(N) /
// (N × X(1)) on goodput: a reference whose requests were refused (an
// admission control's 503s near a small replica's quota) has a goodput
// below what the replica serves, so every count above it reads high,
// more than linear (global-lock-replicas on 2026-12-07 04:45 UTC: one
// replica without the lock refused 23.4% of its requests, and the side
// read 126% and 109% at 2 and 4, so the lock's 84% was judged "scales"
// against them). A fails-to-scale-out verdict does not divide by it.
func refusedReference(sides ...*Side) string {
	for _, s := range sides {
		if s == nil || len(s.Steps) == 0 {
			continue
		}
		if ref := s.Steps[0]; isErrorBound(ref.Bottleneck) {
			return fmt.Sprintf("not to be trusted: %s at %.0f req/s, the reference every efficiency of %q divides by, was bound by errors (%s): its goodput is not what it serves, so the efficiencies above it read high",
				replicasText(ref.Replicas), ref.CapacityRPS, s.Setting, ref.Bottleneck)
		}
	}
	return ""
}

func judgeBaseline(e Experiment, without, with *Side) (string, string) {
	key := e.Endpoint + "." + e.Stat + "_ms"
	if e.Path != "" {
		key = singleKey(without, e.Stat)
	}
	wo, w := without.Metrics[key], with.Metrics[key]
	if wo <= 0 || w <= 0 {
		return VerdictNoChange, fmt.Sprintf("no %s measured on both systems (errors?)", key)
	}
	ratio := w / wo
	what := fmt.Sprintf("one user's %s %s: %s without, %s with (%.2f×)", strings.TrimSuffix(key, "."+e.Stat+"_ms"), e.Stat, fmtMS(wo), fmtMS(w), ratio)
	floor := ms(time.Duration(e.MinDelta))
	switch {
	case math.Abs(w-wo) < floor:
		if v, k, ok := roundsVerdict(e.Factor, ratio, without.Rounds, with.Rounds); ok {
			// Under the floor, but by Factor and the same way in so
			// many of the alternating rounds: not noise.
			return v, what + fmt.Sprintf(": a difference under %s, but by %.1f× or more and %s in %d of the %d alternating rounds (by chance: p = %.2g), not noise",
				fmtMS(floor), e.Factor, roundsWord(v), k, len(with.Rounds), 2*binomialTail(len(with.Rounds), k))
		}
		return VerdictNoChange, what + fmt.Sprintf(": a difference under %s, noise for one user", fmtMS(floor))
	case ratio >= e.Factor:
		return VerdictPerformance, what + fmt.Sprintf(": slower by %.1f× or more for one user, a performance problem", e.Factor)
	case ratio <= 1/e.Factor:
		return VerdictFaster, what + ": faster for one user"
	}
	return VerdictNoChange, what + fmt.Sprintf(": within %.1f× for one user", e.Factor)
}

// minRounds: a difference under the floor counts only when measured in
// at least this many alternating rounds.
const minRounds = 10

// roundsChance is the most a sign test over the alternating rounds may
// leave to chance: a difference that is noise goes one way in each of
// ten rounds 2 × 2⁻¹⁰ of the time (0.00195), the rule's level since it
// was ten of ten. With twenty rounds the same level lets two of them go
// the other way (18 of 20: 0.0004; 17 of 20 would be 0.0026): a round a
// passing disturbance spoiled (local-cache on 2026-12-07 14:20 UTC, one
// round of ten) no longer decides, and noise passes no more often.
const roundsChance = 0.002

// roundsVerdict is the verdict on a difference under the floor: when the
// merged figures differ by Factor (ratio, with / without) and the rounds
// went its way in so many of at least minRounds that chance would do it
// less than roundsChance of the time (a two-sided sign test; a tie
// counts against), it is performance or faster, with how many rounds;
// ok is false otherwise. The rounds alternate (without, with, with,
// without, ...), so a drift of the machine falls on both alike.
func roundsVerdict(factor, ratio float64, without, with []float64) (verdict string, agreeing int, ok bool) {
	if len(with) < minRounds || len(with) != len(without) || (ratio < factor && ratio > 1/factor) {
		return "", 0, false
	}
	slower, faster := 0, 0
	for i := range with {
		if without[i] <= 0 || with[i] <= 0 {
			return "", 0, false
		}
		switch {
		case with[i] > without[i]:
			slower++
		case with[i] < without[i]:
			faster++
		}
	}
	n := len(with)
	switch {
	case ratio >= factor && 2*binomialTail(n, slower) <= roundsChance:
		return VerdictPerformance, slower, true
	case ratio <= 1/factor && 2*binomialTail(n, faster) <= roundsChance:
		return VerdictFaster, faster, true
	}
	return "", 0, false
}

// binomialTail is the chance that at least k of n fair coin tosses come
// up heads.
func binomialTail(n, k int) float64 {
	p := 0.0
	for i := k; i <= n; i++ {
		c := 1.0
		for j := range i {
			c = c * float64(n-j) / float64(j+1)
		}
		p += c
	}
	return p / math.Pow(2, float64(n))
}

func roundsWord(verdict string) string {
	if verdict == VerdictFaster {
		return "faster"
	}
	return "slower"
}

// singleKey is the latency metric of a path's only endpoint.
func singleKey(s *Side, stat string) string {
	for k := range s.Metrics {
		if strings.HasSuffix(k, "."+stat+"_ms") {
			return k
		}
	}
	return ""
}

func judgeDiagnosis(e Experiment, without, with *Side) (string, string) {
	reason := fmt.Sprintf("diagnose calls the system without it %q and with it %q", without.Kind, with.Kind)
	if with.Performance != nil && *with.Performance && (without.Performance == nil || !*without.Performance) {
		return VerdictPerformance, reason + fmt.Sprintf("; one user's p99 is within the SLO without it (%s) and above it with it (%s): a performance problem",
			fmtMS(without.Metrics["baseline.p99_ms"]), fmtMS(with.Metrics["baseline.p99_ms"]))
	}
	if with.Kind == diagnose.KindMachineBound || without.Kind == diagnose.KindMachineBound {
		return VerdictMachineBound, reason + ": the machine held a side back, so the two cannot be compared"
	}
	if with.Kind == without.Kind && with.Kind != diagnose.KindNone {
		longer, ok := longerSerialSection(e, without, with)
		if ok {
			// A system with a serial section of its own (the embedded
			// default's one SQLite writer) made Factor times longer by
			// the setting: contention, and the setting's.
			return with.Kind, reason + longer
		}
		// The same kind with and without, whichever it is (a server
		// CPU-bound both ways is "capacity" both ways): the system's,
		// not the setting's doing.
		return diagnose.KindNone, reason + longer + ": the same with and without, so not the setting's doing"
	}
	return with.Kind, reason
}

// longerSerialSection says whether contention found with and without the
// setting has a serial section (1 / the peak goodput) at least Factor
// times longer with it, and by how much.
func longerSerialSection(e Experiment, without, with *Side) (string, bool) {
	wo, w := without.Metrics["capacity_rps"], with.Metrics["capacity_rps"]
	if with.Kind != diagnose.KindContention || wo <= 0 || w <= 0 {
		return "", false
	}
	what := fmt.Sprintf("; both contention, with a serial section of %s a request (1 / %.0f req/s) without and %s with (%.2f×)",
		fmtMS(1e3/wo), wo, fmtMS(1e3/w), wo/w)
	if wo < e.Factor*w {
		return what, false
	}
	return what + fmt.Sprintf(": %.1f× longer or more with it, the setting's doing", e.Factor), true
}

func judgeScaleout(without, with *Side) (string, string) {
	errAt := func(s *Side) int {
		for _, st := range s.Steps {
			if isErrorBound(st.Bottleneck) {
				return st.Replicas
			}
		}
		return 0
	}
	if n := errAt(with); n > 1 && errAt(without) == 0 {
		return VerdictFailsToScaleOut, fmt.Sprintf("with it, errors bound the capacity from %d replicas on (%s); without it, they bound no count", n, firstBottleneck(with, n))
	}
	top := func(s *Side) (int, float64) {
		st := s.Steps[len(s.Steps)-1]
		return st.Replicas, st.Efficiency
	}
	n, ew := top(with)
	_, ewo := top(without)
	reason := fmt.Sprintf("efficiency at %d replicas: %.0f%% without, %.0f%% with", n, 100*ewo, 100*ew)
	if ew < efficiencyDrop*ewo {
		return VerdictEfficiencyFalls, reason + fmt.Sprintf(": below %.0f%% of the system's without it", 100*efficiencyDrop)
	}
	return VerdictScales, reason
}

// errorsNoLoadMakes reports whether the errors that bound a side's first
// error-bound count were mostly a client error that load does not make:
// a 4xx other than 408 (a request the server timed out) and 429 (a rate
// or a limit refusing it). 5xx, timeouts and refused connections are
// what a starved machine makes, and give no verdict on a machine-bound
// count.
func errorsNoLoadMakes(s *Side) bool {
	if s == nil {
		return false
	}
	for _, st := range s.Steps {
		if isErrorBound(st.Bottleneck) {
			c := st.ErrorStatus
			return c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusTooManyRequests
		}
	}
	return false
}

func firstBottleneck(s *Side, n int) string {
	for _, st := range s.Steps {
		if st.Replicas == n {
			return st.Bottleneck
		}
	}
	return ""
}

// judgeVertical compares scaling out with scaling up at the largest total
// CPU both reached.
func judgeVertical(e Experiment, with *Side) (string, string) {
	var out, up *ScaleStep
	var total float64
	for i, o := range with.Steps {
		if o.Vertical {
			continue
		}
		for j, u := range with.Steps {
			t := float64(o.Replicas) * o.CPU
			if u.Vertical && math.Abs(u.CPU-t) < 1e-9 && t > total {
				out, up, total = &with.Steps[i], &with.Steps[j], t
			}
		}
	}
	if out == nil || up == nil {
		return VerdictEqual, "no replica count and CPU size with the same total CPU were both measured"
	}
	what := fmt.Sprintf("at %g cores in all: %d replicas of %g cores %.0f req/s, 1 replica of %g cores %.0f req/s",
		total, out.Replicas, out.CPU, out.CapacityRPS, up.CPU, up.CapacityRPS)
	switch {
	case out.CapacityRPS >= e.Factor*up.CapacityRPS:
		return VerdictHorizontal, what + ": scaling out gave more"
	case up.CapacityRPS >= e.Factor*out.CapacityRPS:
		return VerdictVertical, what + ": scaling up gave more"
	}
	return VerdictEqual, what + fmt.Sprintf(": within %.1f× of each other", e.Factor)
}

// tradeoff writes the row: each metric without → with (with → without
// for a trade-off of the side without), by how much, and the settings in
// the same order.
func tradeoff(t Tradeoff, without, with *Side) *TradeoffRow {
	if t.Of == "without" {
		without, with = with, without
	}
	row := &TradeoffRow{Setting: settingOf(without) + " → " + settingOf(with), Improved: change(t.Improves, without, with), Worse: t.WorseNote}
	if t.Worsens != "" {
		row.Worse = change(t.Worsens, without, with)
		if a, b, ok := values(t.Worsens, without, with); ok && b <= a {
			// The cost the claim names did not grow: say so, rather than
			// list a fall under "what got worse".
			row.Worse = "not worse as measured: " + row.Worse
		}
		if t.WorseNote != "" {
			row.Worse += "; " + t.WorseNote
		}
	}
	return row
}

func settingOf(s *Side) string {
	if s == nil {
		return "–"
	}
	return s.Setting
}

// values are metric's figures on each side; ok is false when a side
// lacks it.
func values(metric string, without, with *Side) (a, b float64, ok bool) {
	if without == nil || with == nil {
		return 0, 0, false
	}
	a, okA := without.Metrics[metric]
	b, okB := with.Metrics[metric]
	return a, b, okA && okB
}

func change(metric string, without, with *Side) string {
	a, b, ok := values(metric, without, with)
	if !ok {
		return metric + ": not measured"
	}
	pct := "n/a"
	if a != 0 {
		pct = fmt.Sprintf("%+.0f%%", 100*(b-a)/a)
	}
	return fmt.Sprintf("%s %s → %s (%s)", metric, num(a), num(b), pct)
}

func num(v float64) string {
	if v >= 100 || v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
