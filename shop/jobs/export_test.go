package jobs

import (
	"context"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
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

// InsertAt inserts a job due at the given time.
func (q *Queue[TTx]) InsertAt(ctx context.Context, args river.JobArgs, at time.Time) error {
	_, err := q.client.Insert(ctx, args, &river.InsertOpts{ScheduledAt: at})
	return err
}

// ScheduleAhead does what River's scheduler does on the leader: it makes
// the scheduled jobs due within ahead available.
func (q *Queue[TTx]) ScheduleAhead(ctx context.Context, ahead time.Duration) (int, error) {
	now := time.Now().Add(ahead)
	res, err := q.exec.JobSchedule(ctx, &riverdriver.JobScheduleParams{Max: 1000, Now: &now})
	return len(res), err
}

// ReadyRow is the row of an order's "ready" step due at due, as the
// confirmation has a store write it (ConfirmOrderAtOnce).
var ReadyRow = readyRow

// ScheduleReadyByRiver writes an order's "ready" step due at due by River's
// own insert and move to "available", as the confirmation does where
// River's calls do it; false when River found a step of the order there.
func (q *Queue[TTx]) ScheduleReadyByRiver(ctx context.Context, orderID int64, due time.Time) (bool, error) {
	res, err := q.client.Insert(ctx, OrderReadyArgs{OrderID: orderID}, readyOpts(due))
	if err != nil {
		return false, err
	}
	return !res.UniqueSkippedAsDuplicate, waitAvailable(ctx, q.exec, res)
}
