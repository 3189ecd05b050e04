package diagnose

import (
	"crypto/sha256"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// BurnThreadCPU lets the external ground-truth tests burn CPU the same way.
var BurnThreadCPU = burnThreadCPU

// burnThreadCPU spends about d of this thread's CPU time. It counts CPU,
// not wall time, so the work is the same however busy the machine is: on a
// wall clock a descheduled thread would do less work and look cheaper.
func burnThreadCPU(d time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var sum [32]byte
	for start := threadCPU(); threadCPU()-start < d; {
		for range 200 {
			sum = sha256.Sum256(sum[:])
		}
	}
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}
