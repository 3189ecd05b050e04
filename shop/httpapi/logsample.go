package httpapi

import (
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Unavailable request lines (503s) let through: a burst, then so many a
// second. A replica refusing a thousand requests a second while its
// database is down would otherwise write a thousand lines a second saying
// the same thing; the metrics count every one by route and status.
const (
	unavailableLinesBurst     = 20
	unavailableLinesPerSecond = 5
)

// sampledLog lets a per-request log line through at most burst at once
// and then at a steady rate; the next line let through says how many were
// held back since the last one.
type sampledLog struct {
	lim  *rate.Limiter
	now  func() time.Time
	held atomic.Int64
}

func newSampledLog(perSecond float64, burst int, now func() time.Time) *sampledLog {
	if now == nil {
		now = time.Now
	}
	return &sampledLog{lim: rate.NewLimiter(rate.Limit(perSecond), burst), now: now}
}

// allow reports whether a line may be written now and, if so, how many
// were held back before it.
func (l *sampledLog) allow() (heldBack int64, ok bool) {
	if !l.lim.AllowN(l.now(), 1) {
		l.held.Add(1)
		return 0, false
	}
	return l.held.Swap(0), true
}
