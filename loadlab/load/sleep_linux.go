package load

import (
	"os"
	"syscall"
	"time"
	"unsafe"
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
	fd  uintptr
	buf [8]byte
}

const (
	clockMonotonic = 1
	tfdNonblock    = syscall.O_NONBLOCK
	tfdCloexec     = syscall.O_CLOEXEC
)

type itimerspec struct {
	interval, value syscall.Timespec
}

func newSleeper() *sleeper {
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, tfdNonblock|tfdCloexec, 0)
	if errno != 0 {
		return &sleeper{}
	}
	// A non-blocking descriptor makes os.NewFile register it with the
	// runtime's poller, so Read parks the goroutine instead of the thread.
	return &sleeper{f: os.NewFile(fd, "timerfd"), fd: fd}
}

func (s *sleeper) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	if s.f != nil {
		spec := itimerspec{value: syscall.NsecToTimespec(int64(d))}
		_, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, s.fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
		if errno == 0 {
			if _, err := s.f.Read(s.buf[:]); err == nil {
				return
			}
		}
		// The timerfd failed: fall back for good.
		s.close()
	}
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}

func (s *sleeper) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
