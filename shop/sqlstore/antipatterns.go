package sqlstore

// This file is the one place where the store runs bad SQL on purpose: the
// anti-pattern switches that change queries (shop --antipattern
// missing-index,n-plus-one; see docs/antipatterns.md). Nothing else in the
// store knows they exist; shop/backend wraps the store with
// WithBadQueries only when one is switched on.

import (
	"context"
	"fmt"
	"strings"

	"github.com/perfscale/perfscale/shop"
)

// BadQueries says which query anti-patterns the store runs.
type BadQueries struct {
	// NPlusOne reads the menu, carts and orders one row per query: the
	// list of ids first, then each row (or each order's lines) on its own,
	// as an ORM's lazy loading does.
	NPlusOne bool
	// MissingIndex writes the menu's and the item listing's conditions and
	// order so that no index serves them (id + 0, category || ''): the
	// plan a missing index leaves, a scan of the whole table and a sort,
	// without dropping an index that other processes share.
	MissingIndex bool
}

// WithBadQueries returns s running the bad queries b switches on (s
// itself when none is).
func WithBadQueries(s *Store, b BadQueries) shop.Store {
	if !b.NPlusOne && !b.MissingIndex {
		return s
	}
	return &badStore{Store: s, bad: b}
}

type badStore struct {
	*Store
	bad BadQueries
}

// menuItems is the menu's query, or its id list under n-plus-one.
func (b *badStore) menuItems(columns string) string {
	if b.bad.MissingIndex {
		return `SELECT ` + columns + ` FROM items WHERE available AND stock + 0 > 0 ORDER BY category || '', id + 0`
	}
	return `SELECT ` + columns + ` FROM items WHERE available AND stock > 0 ORDER BY category, id`
}

// Menu reads the menu in one query that no index serves (missing-index),
// or its ids and then each item by itself (n-plus-one).
func (b *badStore) Menu(ctx context.Context) (*shop.Menu, error) {
	m := &shop.Menu{Categories: []shop.MenuCategory{}}
	err := b.db.InSnapshot(ctx, func(q Querier) error {
		if err := q.QueryRow(ctx, `SELECT version FROM catalog_version WHERE id = 1`).Scan(&m.Version); err != nil {
			return fmt.Errorf("menu version: %w", err)
		}
		items, err := b.menuRows(ctx, q)
		if err != nil {
			return fmt.Errorf("menu items: %w", err)
		}
		for _, it := range items {
			if n := len(m.Categories); n == 0 || m.Categories[n-1].Name != it.Category {
				m.Categories = append(m.Categories, shop.MenuCategory{Name: it.Category})
			}
			c := &m.Categories[len(m.Categories)-1]
			c.Items = append(c.Items, it)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("menu: %w", err)
	}
	return m, nil
}

func (b *badStore) menuRows(ctx context.Context, q Querier) ([]shop.MenuItem, error) {
	scan := func(r Row, it *shop.MenuItem) error {
		it.Available = true
		return r.Scan(&it.ID, &it.Name, &it.Description, &it.PriceCents, &it.Category)
	}
	if !b.bad.NPlusOne {
		return query(ctx, q, scan, b.menuItems(`id, name, description, price_cents, category`))
	}
	ids, err := query(ctx, q, func(r Row, id *int64) error { return r.Scan(id) }, b.menuItems(`id`))
	if err != nil {
		return nil, err
	}
	items := make([]shop.MenuItem, len(ids))
	for i, id := range ids {
		if err := scan(q.QueryRow(ctx, `SELECT id, name, description, price_cents, category FROM items WHERE `+b.idIs(), id), &items[i]); err != nil {
			return nil, fmt.Errorf("item %d: %w", id, err)
		}
	}
	return items, nil
}

// idIs is the condition of a lookup by id.
func (b *badStore) idIs() string {
	if b.bad.MissingIndex {
		return `id + 0 = ?`
	}
	return `id = ?`
}

// ListItems reads a page with conditions and an order no index serves
// (missing-index).
func (b *badStore) ListItems(ctx context.Context, f shop.ItemFilter) (*shop.ItemPage, error) {
	if !b.bad.MissingIndex {
		return b.Store.ListItems(ctx, f)
	}
	if err := f.Normalize(); err != nil {
		return nil, err
	}
	where := "id + 0 > ?"
	args := []any{f.After}
	if f.Category != "" {
		where += " AND category || '' = ?"
		args = append(args, f.Category)
	}
	if f.Query != "" {
		where += ` AND lower(name) LIKE ? ESCAPE '\'`
		args = append(args, "%"+escapeLike(strings.ToLower(f.Query))+"%")
	}
	args = append(args, f.Limit+1)
	items, err := query(ctx, b.db.Catalog(), scanItem,
		`SELECT `+itemColumns+` FROM items WHERE `+where+` ORDER BY id + 0 LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("list items: %w", err)
	}
	page := &shop.ItemPage{Items: items}
	if len(page.Items) > f.Limit {
		page.Items = page.Items[:f.Limit]
		page.Next = page.Items[f.Limit-1].ID
	}
	return page, nil
}

// Cart reads the cart's item ids and quantities, then each item by itself
// (n-plus-one).
func (b *badStore) Cart(ctx context.Context, sessionID int64) (*shop.Cart, error) {
	if !b.bad.NPlusOne {
		return b.Store.Cart(ctx, sessionID)
	}
	q := b.db.Fresh()
	lines, err := query(ctx, q, func(r Row, l *shop.CheckoutLine) error { return r.Scan(&l.ItemID, &l.Quantity) },
		`SELECT item_id, quantity FROM cart_items WHERE session_id = ? ORDER BY item_id`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("read cart: %w", err)
	}
	for i := range lines {
		l := &lines[i]
		if err := q.QueryRow(ctx, `SELECT name, price_cents, available, stock FROM items WHERE `+b.idIs(), l.ItemID).
			Scan(&l.Name, &l.UnitPriceCents, &l.Available, &l.Stock); err != nil {
			return nil, fmt.Errorf("read cart item %d: %w", l.ItemID, err)
		}
		l.LineTotalCents = l.UnitPriceCents * int64(l.Quantity)
	}
	return shop.CartOf(lines), nil
}

// Order reads the order, then its lines (n-plus-one: as ListOrders).
func (b *badStore) Order(ctx context.Context, sessionID, orderID int64) (*shop.Order, error) {
	if !b.bad.NPlusOne || sessionID == 0 {
		return b.Store.Order(ctx, sessionID, orderID)
	}
	q, release, err := b.db.SessionReader(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	defer release()
	orders, err := query(ctx, q, scanOrder, `SELECT `+orderColumns+` FROM orders WHERE id = ? AND session_id = ?`, orderID, sessionID)
	if err != nil {
		return nil, fmt.Errorf("read order %d: %w", orderID, err)
	}
	if len(orders) == 0 {
		return nil, shop.Errorf(shop.ENOTFOUND, "order %d does not exist", orderID)
	}
	if err := linesOneByOne(ctx, q, orders); err != nil {
		return nil, err
	}
	return &orders[0], nil
}

// ListOrders reads a page of orders, then each order's lines with a query
// of its own (n-plus-one).
func (b *badStore) ListOrders(ctx context.Context, sessionID int64, f shop.OrderFilter) (*shop.OrderPage, error) {
	if !b.bad.NPlusOne {
		return b.Store.ListOrders(ctx, sessionID, f)
	}
	if err := f.Normalize(); err != nil {
		return nil, err
	}
	before := f.Before
	if before == 0 {
		before = 1<<63 - 1
	}
	q, release, err := b.db.SessionReader(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	defer release()
	orders, err := query(ctx, q, scanOrder, `SELECT `+orderColumns+` FROM orders
		WHERE session_id = ? AND id < ? ORDER BY id DESC LIMIT ?`, sessionID, before, f.Limit+1)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	page := &shop.OrderPage{Orders: orders}
	if len(orders) > f.Limit {
		page.Orders = orders[:f.Limit]
		page.Next = page.Orders[f.Limit-1].ID
	}
	if err := linesOneByOne(ctx, q, page.Orders); err != nil {
		return nil, err
	}
	return page, nil
}

func linesOneByOne(ctx context.Context, q Querier, orders []shop.Order) error {
	for i := range orders {
		lines, err := query(ctx, q, func(r Row, l *shop.OrderLine) error {
			return r.Scan(&l.ItemID, &l.Name, &l.Quantity, &l.UnitPriceCents, &l.LineTotalCents)
		}, `SELECT item_id, name, quantity, unit_price_cents, line_total_cents
			FROM order_lines WHERE order_id = ? ORDER BY item_id`, orders[i].ID)
		if err != nil {
			return fmt.Errorf("read order %d's lines: %w", orders[i].ID, err)
		}
		orders[i].Lines = lines
	}
	return nil
}
