package httpapi

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop"
)

// sessionsOf resolves every token to session 7.
type sessionsOf struct{ shop.SessionService }

func (sessionsOf) SessionByTokenHash(context.Context, string) (*shop.Session, error) {
	return &shop.Session{ID: 7}, nil
}

// recordingOrders records what checkout was asked and refuses it as the
// rules would.
type recordingOrders struct {
	shop.Ordering
	got []shop.PlaceOrder
}

func (o *recordingOrders) PlaceOrder(_ context.Context, p shop.PlaceOrder) (*shop.Order, bool, error) {
	o.got = append(o.got, p)
	return nil, false, shop.Errorf(shop.EINVALID, "refused by the checkout rules")
}

// The checkout rules (key and body validation included) have one owner,
// shop.OrderDesk: the handler only decodes, so an invalid key or body reaches
// the rules unjudged, untrimmed, and is judged there once.
func TestCheckoutHandlerLeavesValidationToTheRules(t *testing.T) {
	orders := &recordingOrders{}
	h := NewHandler(Config{Sessions: sessionsOf{}, Ordering: orders})
	for _, body := range []string{`{"customer_name": "", "email": "x"}`, `{"customer_name": " Ada ", "email": "ada@example.com"}`} {
		r := httptest.NewRequest("POST", "/v1/orders", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer t")
		r.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), "refused by the checkout rules") {
			t.Fatalf("status %d %s, want the rules' refusal", rec.Code, rec.Body)
		}
	}
	if len(orders.got) != 2 || orders.got[0].IdempotencyKey != "" || orders.got[1].Checkout.CustomerName != " Ada " || orders.got[1].SessionID != 7 {
		t.Fatalf("checkout got %+v, want both requests as sent", orders.got)
	}
}
