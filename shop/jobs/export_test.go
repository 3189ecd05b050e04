package jobs

import (
	"context"

	"github.com/riverqueue/river"
)

// Subscribe hands the package's tests the River client's events, so they
// wait for a job to finish instead of polling for its effects.
func (q *Queue[TTx]) Subscribe(kinds ...river.EventKind) (<-chan *river.Event, func()) {
	return q.client.Subscribe(kinds...)
}

// Insert inserts a job outside any checkout: a second confirmation of an
// order, as a requeued orphan would be.
func (q *Queue[TTx]) Insert(ctx context.Context, args river.JobArgs) error {
	_, err := q.client.Insert(ctx, args, nil)
	return err
}
