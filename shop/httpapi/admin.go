package httpapi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// AdminFanOut bounds an admin read over every shard: a shard that has not
// answered by then is named as missing, and the others' answer is sent.
// It is shorter than the routes' deadline, so the partial answer goes out
// before the request's own time is up.
const AdminFanOut = 2 * time.Second

// coverage says how whole an admin read over every shard is. Complete is
// false exactly when MissingShards names a shard: the answer beside it
// is then the other shards' only.
type coverage struct {
	Shards        int            `json:"shards"`
	Complete      bool           `json:"complete"`
	MissingShards []missingShard `json:"missing_shards"`
}

// missingShard is a shard (numbered from 1) that did not answer, and why.
type missingShard struct {
	Shard  int    `json:"shard"`
	Detail string `json:"detail"`
}

// noShardAnswered is an admin read that got no answer at all: 503, the
// problem naming every shard.
type noShardAnswered struct{ missing []missingShard }

func (e *noShardAnswered) Error() string {
	parts := make([]string, len(e.missing))
	for i, m := range e.missing {
		parts[i] = fmt.Sprintf("shard %d: %s", m.Shard, m.Detail)
	}
	return "no shard answered (" + strings.Join(parts, "; ") + ")"
}

// coverageOf turns an admin read's error into how whole its answer is:
// nil, or some shards missing, is an answer; every shard missing is
// noShardAnswered; any other error is the read's failure.
func coverageOf(err error) (coverage, error) {
	c := coverage{Complete: true, MissingShards: []missingShard{}}
	if err == nil {
		return c, nil
	}
	var partial partialAnswer
	if !errors.As(err, &partial) {
		return c, err
	}
	asked, missing := partial.MissingShards()
	for _, k := range slices.Sorted(maps.Keys(missing)) {
		c.MissingShards = append(c.MissingShards, missingShard{Shard: k, Detail: whyMissing(missing[k])})
	}
	c.Complete = len(c.MissingShards) == 0
	if len(c.MissingShards) == asked {
		return c, &noShardAnswered{missing: c.MissingShards}
	}
	return c, nil
}

// whyMissing is what the admin is told of a shard's failure: its domain
// message, never an internal error's text.
func whyMissing(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("did not answer within the deadline (at most %s)", AdminFanOut)
	case errors.Is(err, context.Canceled):
		return "the request ended before it answered"
	}
	return shop.ErrorMessage(err)
}

// itemSales is an item's units ordered, over every order.
type itemSales struct {
	ItemID int64 `json:"item_id"`
	Units  int64 `json:"units"`
}

type salesReport struct {
	Items []itemSales `json:"items"`
	coverage
}

func (s *server) handleSales(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	sales, err := s.adminReads.SalesPerItem(r.Context(), AdminFanOut)
	c, err := coverageOf(err)
	if err != nil {
		return err
	}
	c.Shards = s.adminReads.Shards()
	rep := salesReport{Items: []itemSales{}, coverage: c}
	for _, item := range slices.Sorted(maps.Keys(sales)) {
		rep.Items = append(rep.Items, itemSales{ItemID: item, Units: sales[item]})
	}
	return encode(w, http.StatusOK, rep)
}

type ordersReport struct {
	Orders []shop.Order `json:"orders"`
	coverage
}

func (s *server) handleOrdersByStatus(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "status", "limit")
	if err != nil {
		return err
	}
	if q.Get("status") == "" {
		return shop.Errorf(shop.EINVALID, "status is required: one of %s, %s, %s", shop.StatusPlaced, shop.StatusConfirmed, shop.StatusReady)
	}
	status, err := shop.ParseStatus(q.Get("status"))
	if err != nil {
		return err
	}
	f := shop.OrderFilter{}
	if f.Limit, err = queryInt(q, "limit"); err != nil {
		return err
	}
	if err := f.Normalize(); err != nil {
		return err
	}
	orders, err := s.adminReads.OrdersByStatus(r.Context(), status, f.Limit, AdminFanOut)
	c, err := coverageOf(err)
	if err != nil {
		return err
	}
	c.Shards = s.adminReads.Shards()
	return encode(w, http.StatusOK, ordersReport{Orders: orders, coverage: c})
}
