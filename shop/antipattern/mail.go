package antipattern

import (
	"context"
	"fmt"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// Confirmer records a confirmation mail and confirms the order: the
// store's side of what the background job does (shop.FulfilmentService).
type Confirmer interface {
	ConfirmOrder(ctx context.Context, orderID int64, mail func(*shop.Order) shop.Mail, inTx func(ctx context.Context, tx shop.Tx) error) (mailed bool, err error)
}

// InRequestMail is sync-mail: a new order's confirmation mail is sent inside
// the checkout request, the mail provider's latency included, before the
// client gets its answer. The background job still runs and finds the
// order confirmed and mailed, so it sends nothing twice.
type InRequestMail struct {
	shop.Ordering
	store   Confirmer
	compose func(*shop.Order) shop.Mail
	latency time.Duration
}

// NewInRequestMail returns next with the mail sent in the request; compose
// writes the mail (the job's own, jobs.ConfirmationMail), latency is the
// simulated mail provider's (--mail-latency).
func NewInRequestMail(next shop.Ordering, store Confirmer, compose func(*shop.Order) shop.Mail, latency time.Duration) *InRequestMail {
	return &InRequestMail{Ordering: next, store: store, compose: compose, latency: latency}
}

// PlaceOrder places the order, then calls the mail provider and records
// the mail before it returns.
func (s *InRequestMail) PlaceOrder(ctx context.Context, p shop.PlaceOrder) (*shop.Order, bool, error) {
	o, created, err := s.Ordering.PlaceOrder(ctx, p)
	if err != nil || !created {
		return o, created, err
	}
	if s.latency > 0 {
		t := time.NewTimer(s.latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, false, fmt.Errorf("mail order %d's confirmation: %w", o.ID, ctx.Err())
		}
	}
	if _, err := s.store.ConfirmOrder(ctx, o.ID, func(*shop.Order) shop.Mail { return s.compose(o) }, nil); err != nil {
		return nil, false, fmt.Errorf("mail order %d's confirmation: %w", o.ID, err)
	}
	return o, created, nil
}
