//go:build !linux

package load

import "time"

// sleeper sleeps with the runtime's timers elsewhere than on Linux.
type sleeper struct{}

func newSleeper() *sleeper { return &sleeper{} }

func (*sleeper) sleep(d time.Duration) { time.Sleep(d) }

func (*sleeper) close() {}
