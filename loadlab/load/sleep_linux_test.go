package load

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func threads(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Skip("no thread count")
	return 0
}

// The pacer's sleep must park its goroutine, not block a thread with the
// scheduler's P (with GOMAXPROCS=1 that starved the workers and the network
// poller). Fifty sleepers that blocked threads would make the runtime start
// about fifty threads; parked goroutines need none.
func TestSleeperParksTheGoroutineNotTheThread(t *testing.T) {
	const n, d = 50, 300 * time.Millisecond
	before := threads(t)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := newSleeper()
			defer s.close()
			<-start
			t0 := time.Now()
			s.sleep(d)
			if took := time.Since(t0); took < d {
				t.Errorf("slept %v, asked for %v", took, d)
			}
		}()
	}
	close(start)
	time.Sleep(d / 2)
	during := threads(t)
	wg.Wait()
	if during-before > n/2 {
		t.Fatalf("%d threads before, %d while %d goroutines slept: the sleeps block threads", before, during, n)
	}
}
