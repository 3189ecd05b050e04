package shard

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Answer is one shard's answer to a fan-out.
type Answer[T any] struct {
	Shard int // from 0
	Value T
}

// Failure is a shard that did not answer a fan-out: its error, or the
// deadline's.
type Failure struct {
	Shard int // from 0
	Err   error
}

// PartialError says which shards a fan-out is missing; the answers it
// came with are the other shards'.
type PartialError struct {
	Shards   int
	Failures []Failure
}

func (e *PartialError) Error() string {
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = fmt.Sprintf("shard %d: %v", f.Shard+1, f.Err)
	}
	return fmt.Sprintf("%d of %d shards did not answer (%s)", len(e.Failures), e.Shards, strings.Join(parts, "; "))
}

// MissingShards is how many shards were asked and each that did not
// answer, numbered from 1 as operators number them, with its cause: the
// form in which an adapter that knows nothing of this package (the HTTP
// API) reads a partial answer.
func (e *PartialError) MissingShards() (asked int, missing map[int]error) {
	missing = make(map[int]error, len(e.Failures))
	for _, f := range e.Failures {
		missing[f.Shard+1] = f.Err
	}
	return e.Shards, missing
}

// FanOut asks every one of shards at once, under one deadline (timeout,
// or ctx's if sooner), and returns the answers that came, in shard order.
// The error is a *PartialError naming each shard that failed or had not
// answered by the deadline, with its cause, so a partial answer is never
// taken for a whole one. FanOut returns at the deadline even if an ask
// ignores its context; that ask's late answer is dropped. For admin reads
// only: a customer's request never needs more than its own shard.
func FanOut[T any](ctx context.Context, shards int, timeout time.Duration, ask func(ctx context.Context, shard int) (T, error)) ([]Answer[T], error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type reply struct {
		shard int
		value T
		err   error
	}
	replies := make(chan reply, shards) // buffered: a late ask never blocks
	for s := range shards {
		go func() {
			v, err := ask(ctx, s)
			replies <- reply{s, v, err}
		}()
	}
	answered := make([]bool, shards)
	var answers []Answer[T]
	var failures []Failure
	for range shards {
		select {
		case r := <-replies:
			answered[r.shard] = true
			if r.err != nil {
				failures = append(failures, Failure{Shard: r.shard, Err: r.err})
			} else {
				answers = append(answers, Answer[T]{Shard: r.shard, Value: r.value})
			}
			continue
		case <-ctx.Done():
		}
		break
	}
	for s, ok := range answered {
		if !ok {
			failures = append(failures, Failure{Shard: s, Err: ctx.Err()})
		}
	}
	sortByShard(answers, func(a Answer[T]) int { return a.Shard })
	sortByShard(failures, func(f Failure) int { return f.Shard })
	if len(failures) > 0 {
		return answers, &PartialError{Shards: shards, Failures: failures}
	}
	return answers, nil
}

func sortByShard[E any](s []E, shard func(E) int) {
	slices.SortFunc(s, func(a, b E) int { return shard(a) - shard(b) })
}
