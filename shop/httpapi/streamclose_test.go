package httpapi_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop"
)

// An event stream the client closes after it was served is how a stream
// ends: counted as a 200 answer, not as an abandoned request.
func TestAClosedStreamIsNotAnAbandonedRequest(t *testing.T) {
	a := newAPI(t, options{}) // no worker: the order stays placed, the stream open
	token, id := placeOne(t, a)
	s := openStream(t, a.url, token, id, "")
	if e := s.nextEvent(); e.Status != shop.StatusPlaced {
		t.Fatalf("first event %+v, want placed", e)
	}
	s.close()
	route := `route="GET /v1/orders/{id}/events"`
	testwait.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(a.metrics(), `shop_http_requests_in_flight{`+route+`} 0`) {
			return errors.New("the stream's handler has not returned yet")
		}
		return nil
	})
	m := a.metrics()
	if strings.Contains(m, `shop_http_requests_abandoned_total{`+route+`} 1`) {
		t.Error("a stream the client closed was counted as abandoned")
	}
	if !strings.Contains(m, `shop_http_requests_total{code="200",`+route+`} 1`) {
		t.Errorf("the closed stream is not counted as a 200 answer:\n%s", grepLines(m, "shop_http_requests_total"))
	}
}
