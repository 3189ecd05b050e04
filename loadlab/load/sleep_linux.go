package load

import (
	"syscall"
	"time"
)

// preciseSleep sleeps with a direct nanosleep: the Go runtime's timers
// round up to the event loop's resolution, which on some virtual machines
// is about a millisecond, too coarse to pace thousands of requests a
// second. It blocks the calling goroutine's thread, which only the pacer
// uses.
func preciseSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
