package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/perfscale/perfscale/shop"
)

// CatalogVersion returns the menu's version.
func (s *Store) CatalogVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.db.Catalog().QueryRow(ctx, `SELECT version FROM catalog_version WHERE id = 1`).Scan(&v); err != nil {
		return 0, fmt.Errorf("catalog version: %w", err)
	}
	return v, nil
}

// Menu returns the available, in-stock items by category, in one query and
// one snapshot, so the version matches the items.
func (s *Store) Menu(ctx context.Context) (*shop.Menu, error) {
	m := &shop.Menu{Categories: []shop.MenuCategory{}}
	err := s.db.InSnapshot(ctx, func(q Querier) error {
		if err := q.QueryRow(ctx, `SELECT version FROM catalog_version WHERE id = 1`).Scan(&m.Version); err != nil {
			return fmt.Errorf("menu version: %w", err)
		}
		rows, err := q.Query(ctx, `SELECT id, name, description, price_cents, category
			FROM items WHERE available AND `+s.dialect.MenuInStock()+` ORDER BY category, id`)
		if err != nil {
			return fmt.Errorf("menu items: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			it := shop.MenuItem{Available: true}
			if err := rows.Scan(&it.ID, &it.Name, &it.Description, &it.PriceCents, &it.Category); err != nil {
				return fmt.Errorf("menu items: %w", err)
			}
			if n := len(m.Categories); n == 0 || m.Categories[n-1].Name != it.Category {
				m.Categories = append(m.Categories, shop.MenuCategory{Name: it.Category})
			}
			c := &m.Categories[len(m.Categories)-1]
			c.Items = append(c.Items, it)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("menu items: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("menu: %w", err)
	}
	return m, nil
}

const itemColumns = `id, name, description, price_cents, category, available, stock, updated_at`

func scanItem(r Row, it *shop.Item) error {
	return r.Scan(&it.ID, &it.Name, &it.Description, &it.PriceCents, &it.Category,
		&it.Available, &it.Stock, microsTime{&it.UpdatedAt})
}

// Item returns one item.
func (s *Store) Item(ctx context.Context, id int64) (*shop.Item, error) {
	it := new(shop.Item)
	err := scanItem(s.db.Catalog().QueryRow(ctx, `SELECT `+itemColumns+` FROM items WHERE id = ?`, id), it)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, shop.Errorf(shop.ENOTFOUND, "item %d does not exist", id)
	}
	if err != nil {
		return nil, fmt.Errorf("item %d: %w", id, err)
	}
	return it, nil
}

// itemsPerRead bounds the ids of one statement of Items: SQLite takes one
// placeholder an id (its limit is 32,766), PostgreSQL one array.
const itemsPerRead = 1000

// Items returns the items among ids that exist, in id order: one statement
// for up to itemsPerRead of them.
func (s *Store) Items(ctx context.Context, ids []int64) ([]shop.Item, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	var items []shop.Item
	for chunk := range slices.Chunk(ids, itemsPerRead) {
		in, args := s.dialect.InIDs("id", chunk)
		got, err := query(ctx, s.db.Catalog(), scanItem, `SELECT `+itemColumns+` FROM items WHERE `+in+` ORDER BY id`, args...)
		if err != nil {
			return nil, fmt.Errorf("read %d items: %w", len(chunk), err)
		}
		items = append(items, got...)
	}
	return items, nil
}

// ListItems returns a keyset page of items in id order.
func (s *Store) ListItems(ctx context.Context, f shop.ItemFilter) (*shop.ItemPage, error) {
	if err := f.Normalize(); err != nil {
		return nil, err
	}
	where := "id > ?"
	args := []any{f.After}
	if f.Category != "" {
		where += " AND category = ?"
		args = append(args, f.Category)
	}
	if f.Query != "" {
		where += ` AND lower(name) LIKE ? ESCAPE '\'`
		args = append(args, "%"+escapeLike(strings.ToLower(f.Query))+"%")
	}
	args = append(args, f.Limit+1)
	items, err := query(ctx, s.db.Catalog(), scanItem,
		`SELECT `+itemColumns+` FROM items WHERE `+where+` ORDER BY id LIMIT ?`, args...)
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

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

func escapeLike(s string) string { return likeEscaper.Replace(s) }

// UpdateItem applies an admin change and bumps the catalog version.
func (s *Store) UpdateItem(ctx context.Context, id int64, u shop.ItemUpdate) (*shop.Item, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	it := new(shop.Item)
	err := s.db.InTx(ctx, func(tx Tx) error {
		err := scanItem(tx.QueryRow(ctx, `UPDATE items SET
				price_cents = COALESCE(?, price_cents),
				stock = COALESCE(?, stock),
				available = COALESCE(?, available),
				updated_at = ?
			WHERE id = ? RETURNING `+itemColumns, u.PriceCents, u.Stock, u.Available, Micros(s.now()), id), it)
		if errors.Is(err, sql.ErrNoRows) {
			return shop.Errorf(shop.ENOTFOUND, "item %d does not exist", id)
		}
		if err != nil {
			return fmt.Errorf("update item %d: %w", id, err)
		}
		return BumpCatalogVersion(ctx, tx)
	})
	if err != nil {
		return nil, err
	}
	return it, nil
}
