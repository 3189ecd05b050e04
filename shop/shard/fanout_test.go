package shard_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/perfscale/perfscale/shop/shard"
)

// TestFanOutAsksEveryShardAtOnce: each ask waits until all have started,
// so asking one after another would meet the deadline instead.
func TestFanOutAsksEveryShardAtOnce(t *testing.T) {
	const shards = 4
	var started sync.WaitGroup
	started.Add(shards)
	answers, err := shard.FanOut(context.Background(), shards, time.Minute, func(ctx context.Context, s int) (int, error) {
		started.Done()
		started.Wait()
		return s * 10, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []shard.Answer[int]{{0, 0}, {1, 10}, {2, 20}, {3, 30}}
	if diff := cmp.Diff(want, answers); diff != "" {
		t.Fatalf("answers (-want +got):\n%s", diff)
	}
}

func TestFanOutNamesTheShardThatFailed(t *testing.T) {
	down := errors.New("connection refused")
	answers, err := shard.FanOut(context.Background(), 3, time.Minute, func(ctx context.Context, s int) (string, error) {
		if s == 1 {
			return "", down
		}
		return "ok", nil
	})
	var partial *shard.PartialError
	if !errors.As(err, &partial) || len(partial.Failures) != 1 || partial.Failures[0].Shard != 1 || !errors.Is(partial.Failures[0].Err, down) {
		t.Fatalf("error = %v, want shard 2 of 3 named with its cause", err)
	}
	if got := err.Error(); got != "1 of 3 shards did not answer (shard 2: connection refused)" {
		t.Errorf("message = %q", got)
	}
	if len(answers) != 2 || answers[0].Shard != 0 || answers[1].Shard != 2 {
		t.Fatalf("answers %v, want shards 1 and 3's", answers)
	}
}

// TestFanOutReturnsAtTheDeadlineWhateverAShardDoes: one shard's ask
// ignores its context and never returns while the test runs; the fan-out
// still returns, with that shard named. (On a loaded machine the other two
// may miss the 50 ms too: each is then named with the deadline, never lost.)
func TestFanOutReturnsAtTheDeadlineWhateverAShardDoes(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	answers, err := shard.FanOut(context.Background(), 3, 50*time.Millisecond, func(ctx context.Context, s int) (int, error) {
		if s == 2 {
			<-stuck
		}
		return s, nil
	})
	var partial *shard.PartialError
	if !errors.As(err, &partial) {
		t.Fatalf("error = %v, want a *PartialError", err)
	}
	named := map[int]bool{}
	for _, f := range partial.Failures {
		if !errors.Is(f.Err, context.DeadlineExceeded) {
			t.Errorf("shard %d failed with %v, want the deadline", f.Shard+1, f.Err)
		}
		named[f.Shard] = true
	}
	if !named[2] {
		t.Errorf("the stuck shard 3 is not named: %v", err)
	}
	for _, a := range answers {
		if named[a.Shard] || a.Value != a.Shard {
			t.Errorf("answer %+v is wrong or also named as failed", a)
		}
	}
	if len(answers)+len(partial.Failures) != 3 {
		t.Fatalf("%d answers and %d failures for 3 shards", len(answers), len(partial.Failures))
	}
}

func TestFanOutStopsWhenTheCallerGivesUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	answers, err := shard.FanOut(ctx, 2, time.Minute, func(ctx context.Context, s int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	if len(answers) != 0 || err == nil || !strings.Contains(err.Error(), "2 of 2 shards did not answer") || !errors.Is(err.(*shard.PartialError).Failures[1].Err, context.Canceled) {
		t.Fatalf("answers %v, error %v; want none and both shards named as cancelled", answers, err)
	}
}
