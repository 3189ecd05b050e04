package httpapi

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// refusalSummaryEvery is the least time between two lines of the refusal
// summary.
const refusalSummaryEvery = time.Second

// refusalSummary writes admission control's refusals to the log as counts
// by shed class and reason, at most one line a second. A refusal's own
// request line is at debug level (a line per refusal would spend the CPU
// shedding saves), and shop_admission_refused_total has the counts, but a
// stall seen from outside is matched with the refusals by time, from the
// log: each line says how many were refused between its first and last
// refusal. The first refusal after a quiet second writes a line at once, so
// the onset is logged when it happens; the last refusals of a burst are
// written when the next refusal comes, on a line of their own with their
// own times.
type refusalSummary struct {
	log   *slog.Logger
	now   func() time.Time
	every time.Duration
	// counts since the last line, by class and reason (refusedAtOnce,
	// refusedWaited); first and last are the unix nanoseconds of the
	// first and last refusal they count, lastLine of the last line.
	counts      [numShedClasses][2]atomic.Int64
	first, last atomic.Int64
	lastLine    atomic.Int64
}

func newRefusalSummary(log *slog.Logger, now func() time.Time) *refusalSummary {
	if now == nil {
		now = time.Now
	}
	return &refusalSummary{log: log, now: now, every: refusalSummaryEvery}
}

// note counts a refusal, and writes a line when the last was a second or
// more ago. A refusal after a quiet second first writes the counts held
// back (a burst that ended, with its own times), then a line of its own:
// a line never spans a quiet stretch. It allocates nothing but when it
// writes.
func (s *refusalSummary) note(c shedClass, why int) {
	if s == nil {
		return
	}
	now := s.now().UnixNano()
	quiet := now-s.last.Load() >= int64(s.every)
	if quiet {
		s.lastLine.Store(now)
		s.write() // nothing when nothing is held
	}
	s.counts[c][why].Add(1)
	s.first.CompareAndSwap(0, now)
	s.last.Store(now)
	if quiet {
		s.write()
		return
	}
	prev := s.lastLine.Load()
	if now-prev < int64(s.every) || !s.lastLine.CompareAndSwap(prev, now) {
		return
	}
	s.write()
}

// write takes the counts since the last line and logs them. A refusal
// noted while it runs is in this line or the next, never lost.
func (s *refusalSummary) write() {
	first, last := s.first.Swap(0), s.last.Load()
	attrs := make([]slog.Attr, 0, 2*(numShedClasses-1)+3)
	var total int64
	for c := shedFirst; c < numShedClasses; c++ {
		limit, waited := s.counts[c][refusedAtOnce].Swap(0), s.counts[c][refusedWaited].Swap(0)
		total += limit + waited
		attrs = append(attrs, slog.Int64(c.String()+"_limit", limit), slog.Int64(c.String()+"_waited", waited))
	}
	if total == 0 {
		return
	}
	attrs = append(attrs, slog.Int64("refused", total),
		slog.Time("first", time.Unix(0, first)), slog.Time("last", time.Unix(0, max(last, first))))
	s.log.LogAttrs(context.Background(), slog.LevelWarn, "admission refused requests", attrs...)
}
