package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/sqlstore"
)

// advanceAtOnce moves an order's status and appends the change's event in
// one statement (sqlstore.AdvanceAtOnceDB): the worker's confirmation and
// "ready" step sent the update and then the event, two round trips (two
// wake-ups of the backend) where one does. The event is written only when
// the update moved the order (it is read from the update's RETURNING), so a
// retried step that finds the order moved on writes nothing, as before. The
// event's seq is one past the order's last, read in the statement's
// snapshot: the step's transaction holds the order's row lock from the
// update on, and every event of an order is written by a transaction that
// holds that lock or by the checkout that created the order, so no other
// transaction can take the same seq (the key (order_id, seq) would refuse
// it all the same).
const advanceAtOnce = advanceCTEs + `
SELECT count(*) FROM event`

// advanceCTEs move the order ($3) from $4 to $1 at $2 and write the event.
const advanceCTEs = `WITH moved AS (
	UPDATE orders SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4
	RETURNING id
), event AS (
	INSERT INTO order_events (order_id, seq, status, created_at)
	SELECT id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM order_events WHERE order_id = $3), $1, $2 FROM moved
	RETURNING order_id
)`

// readyAtOnce is the worker's "ready" step in one statement, run outside
// any transaction (it commits alone): advanceAtOnce's move and event, and
// the completion of the step's River job ($5) at $6, as River's
// JobCompleteTx would complete it in the step's transaction (its state and
// finalized_at, only while it runs). The step was a transaction of four
// round trips and five statements (BEGIN with its SET LOCAL, the move,
// River's completion, commit); the completion is done whether or not the
// order moved, as it was (a retried step completes its job).
const readyAtOnce = advanceCTEs + `, done AS (
	UPDATE river_job SET state = 'completed'::river_job_state, finalized_at = $6::timestamptz
	WHERE id = $5::bigint AND state = 'running'::river_job_state
	RETURNING id
)
SELECT (SELECT count(*) FROM event), (SELECT count(*) FROM done)`

// genericPlans has the rest of an implicit transaction (a pgx batch) run
// its statements' generic plans, as storeTx has the store's transactions
// do: set_config's local setting, unlike SET LOCAL, is taken outside a
// transaction block without a warning, and lasts to the batch's end.
const genericPlans = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true)`

// MarkReadyAtOnce is the "ready" step in one round trip: readyAtOnce,
// after genericPlans, as one pgx batch, so one implicit transaction and
// one commit.
func (f flowDB) MarkReadyAtOnce(ctx context.Context, orderID int64, at int64, done shop.JobDone) (bool, error) {
	b := &pgx.Batch{}
	b.Queue(genericPlans)
	b.Queue(readyAtOnce, shop.StatusReady, at, orderID, shop.StatusConfirmed, done.ID, done.At)
	var written, completed int
	err := f.db.sendBatch(ctx, b, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.QueryRow().Scan(&written, &completed)
	})
	if err != nil {
		return false, fmt.Errorf("move order %d to ready with its event and complete job %d: %w", orderID, done.ID, unavailable(err))
	}
	return written == 1, nil
}

// AdvanceAtOnce moves an order from one status to the next with its event
// in one statement on tx; false, and nothing written, when the order was
// not in from.
func (flowDB) AdvanceAtOnce(ctx context.Context, tx sqlstore.Tx, orderID int64, from, to shop.Status, at int64) (bool, error) {
	var written int
	if err := tx.QueryRow(ctx, advanceAtOnce, to, at, orderID, from).Scan(&written); err != nil {
		return false, fmt.Errorf("move order %d to %s with its event: %w", orderID, to, err)
	}
	return written == 1, nil
}

// ReadThenAdvanceAtOnce sends a read and then advanceAtOnce together as one
// pgx batch on tx, one round trip: the confirmation's read of the order
// and its move were two. Inside the transaction the batch's Sync commits
// nothing, and each statement takes its own snapshot in turn, so the read
// sees the order before the move as it did sent alone; a failed read
// aborts the transaction, and the move with it.
func (flowDB) ReadThenAdvanceAtOnce(ctx context.Context, tx sqlstore.Tx, query string, args []any, scan func(sqlstore.Rows) error,
	orderID int64, from, to shop.Status, at int64) (bool, error) {
	ptx, ok := tx.Driver().(pgx.Tx)
	if !ok {
		return false, fmt.Errorf("move order %d: a transaction of %T, not pgx's", orderID, tx.Driver())
	}
	b := &pgx.Batch{}
	b.Queue(numbered(query), args...)
	b.Queue(advanceAtOnce, to, at, orderID, from)
	br := ptx.SendBatch(ctx, b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return false, unavailable(err)
	}
	if err := scan(pgRows{rows}); err != nil {
		return false, err
	}
	var written int
	if err := br.QueryRow().Scan(&written); err != nil {
		return false, fmt.Errorf("move order %d to %s with its event: %w", orderID, to, unavailable(err))
	}
	return written == 1, br.Close()
}
