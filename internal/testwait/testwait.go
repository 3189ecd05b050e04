// Package testwait waits, in tests, for a state that another goroutine or
// process brings about, when the test has no event (a channel, a hook, a
// readiness signal) to wait on instead. It is the one polling loop the tests
// share, so that each waits the same way: without taking the CPU the awaited
// work needs, and failing with the state it last saw rather than just "timed
// out".
package testwait

import (
	"testing"
	"time"
)

// Polling starts fast, so that a condition that holds soon is seen soon, and
// backs off to maxPoll, so that a long wait costs a few calls a second.
const (
	firstPoll = time.Millisecond
	maxPoll   = 100 * time.Millisecond
)

// Eventually calls cond until it returns nil, sleeping between calls (1 ms at
// first, doubling up to 100 ms). If cond has not returned nil within timeout,
// Eventually fails t with cond's last error, which should say what state it
// saw ("2 of 3 replicas ready", "status 503"). cond runs on the caller's
// goroutine, so it may itself call t.Fatal when the wait cannot succeed any
// more (a process it waits for has exited).
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	poll := firstPoll
	for {
		err := cond()
		if err == nil {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("still not so after %v: %v", timeout, err)
			return
		}
		time.Sleep(min(poll, left))
		poll = min(2*poll, maxPoll)
	}
}
