package load

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// sleeper sleeps precisely without holding the Go scheduler's P.
//
// The Go runtime's timers round short sleeps up to the netpoller's
// millisecond resolution (time.Sleep(30µs) took about 0.8 ms more on this
// project's VM), too coarse to pace thousands of requests a second. A
// direct nanosleep is precise (about 80 µs over) but blocks the thread
// with its P: with GOMAXPROCS=1 (one core, or taskset) the workers and the
// network poller then starve, and at 35,000 req/s the open loop collapsed
// into 1,000 busy connections and 144 ms latencies with both CPUs half
// idle. A timerfd read through the netpoller parks only the goroutine, and
// wakes it about 30 µs after the deadline.
type sleeper struct {
	f   *os.File // the timerfd, nil if it could not be had
	fd  int
	buf [8]byte
}

func newSleeper() *sleeper {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return &sleeper{}
	}
	// A non-blocking descriptor makes os.NewFile register it with the
	// runtime's poller, so Read parks the goroutine instead of the thread.
	return &sleeper{f: os.NewFile(uintptr(fd), "timerfd"), fd: fd}
}

func (s *sleeper) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	if s.f != nil {
		spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
		if err := unix.TimerfdSettime(s.fd, 0, &spec, nil); err == nil {
			if _, err := s.f.Read(s.buf[:]); err == nil {
				return
			}
		}
		// The timerfd failed: fall back for good.
		s.close()
	}
	ts := unix.NsecToTimespec(int64(d))
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}

func (s *sleeper) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
