package main

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
)

// The goals under overload (issue 19), and what "normal" is.
const (
	// normal is the journey's latency objective: a second after the drop
	// is back to normal when its p99 is within it and at most
	// normalErrors of its requests failed.
	normal       = 50 * time.Millisecond
	normalErrors = 0.01
	// At 3x: answers within objective at least goalGoodput of the
	// capacity, at least goalCheckouts of the checkouts succeed, and the
	// admitted checkouts' p99 is at most goalP99Factor times one user's.
	goalGoodput   = 0.9
	goalCheckouts = 0.95
	goalP99Factor = 2.0
	// At 10x: back to normal within goalRecovery after the load drops,
	// and memory bounded: the peak of the load's second half at most
	// boundedGrowth times the first half's (a leak or a queue that grows
	// without bound keeps climbing; a working set that settled does not).
	goalRecovery  = 5 * time.Second
	boundedGrowth = 1.1
)

// recovery is how long after the drop the load that followed it took to
// be back to normal for good, from its per-second series (each second
// counted when it ended; series[i] ends at i+1 s from the run's start).
// The drop is at drop from the start of a run that was silent until
// then: the second it falls in holds only requests sent after it. Seconds
// without requests count neither way. recovered is false when the last
// second with requests was still not normal (after is then the time
// measured after the drop).
func recovery(series []load.Second, drop time.Duration) (after time.Duration, recovered bool, ok bool) {
	first := int(drop / time.Second) // the second the drop falls in
	lastBad, lastSeen := -1, -1
	for i := first; i < len(series); i++ {
		s := series[i]
		if s.Requests == 0 {
			continue
		}
		lastSeen = i
		if s.P99 > normal || float64(s.Errors) > normalErrors*float64(s.Requests) {
			lastBad = i
		}
	}
	if lastSeen < 0 {
		return 0, false, false
	}
	end := func(i int) time.Duration { return time.Duration(i+1)*time.Second - drop }
	if lastBad < 0 {
		return 0, true, true
	}
	if lastBad == lastSeen {
		return end(lastSeen), false, true
	}
	return end(lastBad), true, true
}

// silentFor is how long a staged run sent nothing from its start: its
// leading stages with a target of 0.
func silentFor(stages []load.StageResult) time.Duration {
	var d time.Duration
	for _, s := range stages {
		if s.Target > 0 || s.From > 0 {
			break
		}
		d += s.Duration
	}
	return d
}

// phase is the overload's own part of a run: the last stage of a run
// that warmed up first (its offered rate, and the requests due in it
// answered and succeeded, a second), or the whole of a run without
// stages. begin is when it started after the run's start.
type phase struct {
	offered, answered, succeeded float64
	begin, length                time.Duration
}

func loadPhase(res load.Result) phase {
	if len(res.Stages) == 0 {
		return phase{offered: res.Rate, answered: res.ThroughputRPS, succeeded: res.GoodputRPS, length: res.Elapsed}
	}
	last := res.Stages[len(res.Stages)-1]
	p := phase{offered: last.Target, answered: last.ThroughputRPS, length: last.Duration}
	if d := last.Duration.Seconds(); d > 0 {
		p.succeeded = float64(last.Requests-last.Errors.Total()) / d
	}
	for _, s := range res.Stages[:len(res.Stages)-1] {
		p.begin += s.Duration
	}
	return p
}

// rssSample is one reading of the resident memory: when (seconds since
// the epoch; 0 in files written before the script recorded it) and how
// much, in KiB.
type rssSample struct {
	at float64
	kb int
}

// parseRSS reads the sampler's lines, "SECONDS KIB" (or "KIB").
func parseRSS(text string) []rssSample {
	var out []rssSample
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var s rssSample
		var err error
		switch len(f) {
		case 1:
			s.kb, err = strconv.Atoi(f[0])
		case 2:
			if s.at, err = strconv.ParseFloat(f[0], 64); err == nil {
				s.kb, err = strconv.Atoi(f[1])
			}
		default:
			continue
		}
		if err == nil {
			out = append(out, s)
		}
	}
	return out
}

// memory is what the samples say of the resident memory: its peak over
// the whole run, and over the first and second halves of the load (from
// and to, seconds since the epoch); halves is false when either half has
// no sample.
type memory struct {
	peak, firstHalf, secondHalf int // KiB
	halves                      bool
}

func memoryOf(samples []rssSample, from, to float64) memory {
	var m memory
	mid := (from + to) / 2
	var inFirst, inSecond bool
	for _, s := range samples {
		m.peak = max(m.peak, s.kb)
		switch {
		case s.at >= from && s.at < mid:
			m.firstHalf, inFirst = max(m.firstHalf, s.kb), true
		case s.at >= mid && s.at <= to:
			m.secondHalf, inSecond = max(m.secondHalf, s.kb), true
		}
	}
	m.halves = inFirst && inSecond && from > 0
	return m
}

// bounded says whether the memory stopped growing during the load.
func (m memory) bounded() bool {
	return m.halves && m.firstHalf > 0 && float64(m.secondHalf) <= boundedGrowth*float64(m.firstHalf)
}

// summary is what the goals are judged on, for one run.
type summary struct {
	mode, mult string
	round      int
	ofCapacity float64 // answers within objective (server) over the capacity
	// checkoutOK is the share of checkouts that succeeded, -1 without any.
	checkoutOK  float64
	checkoutP99 time.Duration // the admitted checkouts'
	// overloadOK and dropOK: neither generator flagged itself.
	overloadOK, dropOK bool
	// busyMachine: a generator noted that other work on the machine held
	// the CPU (sends late while it was idle, or the machine's CPUs
	// saturated): the figures are then an indication, whatever they say.
	busyMachine bool
	alive       bool
	mem         memory
	// back is the recovery after the drop (backKnown false without a
	// series after it).
	back                 time.Duration
	recovered, backKnown bool
}

func (s summary) where() string {
	w := fmt.Sprintf("%s×, admission %s", s.mult, s.mode)
	if s.round > 0 {
		w += fmt.Sprintf(" (round %d)", s.round)
	}
	return w
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "not met"
}

// judge3x says, for a run at 3x, whether each of the goals at 3x was met;
// unloaded is one user's checkout p99 in the same mode (0: not measured).
// A run whose generator flagged itself shows nothing.
func judge3x(s summary, unloaded time.Duration) string {
	if !s.overloadOK {
		return s.where() + ": not shown (loadlab's generator flagged the run: the load offered was not 3×)"
	}
	parts := []string{fmt.Sprintf("goodput %.2f of capacity (≥ %.1f): %s", s.ofCapacity, goalGoodput, verdict(s.ofCapacity >= goalGoodput))}
	if s.checkoutOK < 0 {
		parts = append(parts, "checkouts: none sent (not shown)")
	} else {
		parts = append(parts, fmt.Sprintf("checkouts succeeded %.1f %% (≥ %.0f %%): %s", 100*s.checkoutOK, 100*goalCheckouts, verdict(s.checkoutOK >= goalCheckouts)))
	}
	switch {
	case unloaded <= 0:
		parts = append(parts, "admitted checkouts' p99: no one-user run to compare with (not shown)")
	case s.checkoutP99 <= 0:
		parts = append(parts, "admitted checkouts' p99: none admitted (not met)")
	default:
		parts = append(parts, fmt.Sprintf("admitted checkouts' p99 %s against %.0f × %s for one user: %s",
			ms(s.checkoutP99), goalP99Factor, ms(unloaded), verdict(float64(s.checkoutP99) <= goalP99Factor*float64(unloaded))))
	}
	return s.where() + ": " + strings.Join(parts, "; ") + s.indication()
}

// busyNote is what a verdict adds when a generator noted a busy machine.
const busyNote = " (an indication only: loadlab noted that other work on the machine held the CPU; see its notes below)"

func (s summary) indication() string {
	if s.busyMachine {
		return busyNote
	}
	return ""
}

// judge10x says, for a run at 10x, whether it stayed alive, its memory
// stayed bounded and it was back to normal within the goal after the
// drop. A run whose generator flagged itself shows nothing (its figures
// are given, for what was offered); the recovery also needs the drop's
// generator unflagged.
func judge10x(s summary) string {
	parts := []string{"alive: " + verdict(s.alive)}
	if s.mem.halves {
		parts = append(parts, fmt.Sprintf("memory %d → %d MiB (peak of the first → second half of the load; bounded if ≤ %.0f %% more): %s",
			s.mem.firstHalf/1024, s.mem.secondHalf/1024, 100*(boundedGrowth-1), verdict(s.mem.bounded())))
	} else {
		parts = append(parts, "memory: no samples over the load (not shown)")
	}
	switch {
	case !s.backKnown:
		parts = append(parts, "back to normal: no series after the drop (not shown)")
	case !s.dropOK:
		parts = append(parts, "back to normal: not shown (loadlab's generator of the drop flagged itself)")
	case !s.recovered:
		parts = append(parts, fmt.Sprintf("back to normal: not within the %s measured after the drop (not met)", seconds(s.back)))
	default:
		parts = append(parts, fmt.Sprintf("back to normal %s after the drop (≤ %s): %s", seconds(s.back), seconds(goalRecovery), verdict(s.back <= goalRecovery)))
	}
	if !s.overloadOK {
		return s.where() + ": not shown (loadlab's generator flagged the run: less than 10× was offered); " + strings.Join(parts, "; ") + s.indication()
	}
	return s.where() + ": " + strings.Join(parts, "; ") + s.indication()
}

// seconds writes d to a tenth of a second (a drop 1 ms past a whole
// second is not news).
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Round(100*time.Millisecond).Seconds(), 'f', -1, 64) + " s"
}
