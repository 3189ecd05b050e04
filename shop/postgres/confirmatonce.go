package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/sqlstore"
)

// An order's confirmation in two round trips of one transaction
// (sqlstore.ConfirmAtOnceDB), where the general way (ConfirmOrder with the
// queue's work in its transaction) took five: BEGIN with its SET LOCAL,
// the order's read with its move, the mail, the queue's statement, and
// commit. The first round trip is BEGIN, the transaction's generic plans
// and the order's read, sent as one pgx batch (a BEGIN in a pipeline opens
// a transaction block that outlives the batch's Sync); the mail is
// composed from what it read; the second is confirmAtOnce and COMMIT. One
// transaction, so still one commit, and the read sees the order as it was
// before the move, as it did.
//
// confirmAtOnce moves the order (advanceCTEs), records the mail only if
// it moved, writes the next step's job as the queue's own insert would
// (the row River's InsertTx writes for shop.UniqueJobRow: River's columns,
// its unique key and states, skipped on River's unique index when a job
// of the key is there in one of its unique states; no notification, as
// River sends none for a job due later) and completes the confirmation's
// job as River's JobCompleteTx would (state and finalized_at, only while
// it runs). The next step and the completion are written whether or not
// the order moved: a retry has them to finish.
const confirmAtOnce = advanceCTEs + `, mailed AS (
	INSERT INTO mail_outbox (order_id, to_addr, subject, body, sent_at)
	SELECT id, $5::text, $6::text, $7::text, $2 FROM moved WHERE $5::text IS NOT NULL
	ON CONFLICT (order_id) DO NOTHING
	RETURNING order_id
), next AS (
	INSERT INTO river_job (args, created_at, kind, max_attempts, metadata, priority, queue, scheduled_at, state, tags, unique_key, unique_states)
	VALUES ($8::jsonb, now(), $9::text, $10::smallint, '{}'::jsonb, $11::smallint, $12::text, $13::timestamptz,
		'available'::river_job_state, '{}'::varchar(255)[], $14::bytea, $15::integer::bit(8))
	ON CONFLICT (unique_key)
		WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL AND river_job_state_in_bitmask(unique_states, state)
		DO NOTHING
), done AS (
	UPDATE river_job SET state = 'completed'::river_job_state, finalized_at = $16::timestamptz
	WHERE id = $17::bigint AND state = 'running'::river_job_state
)
SELECT (SELECT count(*) FROM event), (SELECT count(*) FROM mailed)`

// ConfirmAtOnce confirms an order in two round trips; see confirmAtOnce.
func (f flowDB) ConfirmAtOnce(ctx context.Context, c sqlstore.ConfirmStep) (shop.ConfirmedAtOnce, error) {
	conn, err := f.db.primary.Acquire(ctx)
	if err != nil {
		return shop.ConfirmedAtOnce{Handled: true}, unavailable(err)
	}
	defer conn.Release()
	done, err := confirmOn(ctx, conn, c)
	if err != nil {
		rollback(ctx, conn)
		return shop.ConfirmedAtOnce{Handled: true}, unavailable(err)
	}
	return done, nil
}

// rollbackTimeout bounds the ROLLBACK after a failed confirmation, sent
// even when the confirmation's own context has ended.
const rollbackTimeout = 5 * time.Second

// rollback ends a transaction left open on conn (a statement failed, or
// the commit was never sent). A connection that cannot say so in time is
// closed by pgx, and the pool drops a closed connection, or one still in
// a transaction, on release.
func rollback(ctx context.Context, conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	_, _ = conn.Exec(ctx, "ROLLBACK")
}

// confirmOn sends the confirmation's two round trips on conn.
func confirmOn(ctx context.Context, conn *pgxpool.Conn, c sqlstore.ConfirmStep) (shop.ConfirmedAtOnce, error) {
	done := shop.ConfirmedAtOnce{Handled: true}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(genericPlans)
	b.Queue(numbered(c.Read), c.ReadArgs...)
	var mail *shop.Mail
	err := sendBatchOn(ctx, conn, b, func(br pgx.BatchResults) error {
		for range 2 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		mail, err = c.Compose(pgRows{rows})
		return err
	})
	if err != nil {
		return done, err
	}
	var to, subject, body any
	if mail != nil {
		to, subject, body = mail.To, mail.Subject, mail.Body
	}
	n := c.Next
	b = &pgx.Batch{}
	b.Queue(confirmAtOnce, shop.StatusConfirmed, c.At, c.OrderID, shop.StatusPlaced, to, subject, body,
		string(n.Args), n.Kind, n.MaxAttempts, n.Priority, n.Queue, n.ScheduledAt, n.UniqueKey, int32(n.UniqueStates),
		c.Done.At, c.Done.ID)
	if c.BeforeCommit == nil {
		b.Queue("COMMIT")
	}
	var moved, mailed int
	err = sendBatchOn(ctx, conn, b, func(br pgx.BatchResults) error {
		if err := br.QueryRow().Scan(&moved, &mailed); err != nil {
			return fmt.Errorf("move order %d to %s with its event, mail and next step: %w", c.OrderID, shop.StatusConfirmed, err)
		}
		if c.BeforeCommit == nil {
			_, err := br.Exec()
			return err
		}
		return nil
	})
	if err != nil {
		return done, err
	}
	if c.BeforeCommit != nil {
		c.BeforeCommit(moved == 1)
		if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
			return done, err
		}
	}
	done.Mailed = mailed == 1
	return done, nil
}
