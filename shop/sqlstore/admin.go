package sqlstore

import (
	"context"
	"fmt"

	"github.com/perfscale/perfscale/shop"
)

// The admin's reads over every order of the database (on a sharded
// store, each shard's part of a read over all of them: shard.Reader).
// They read the primary, and scan: they are for an operator, not a
// customer's path, and no index serves them.

// SalesPerItem is the units ordered of each item.
func (s *Store) SalesPerItem(ctx context.Context) (map[int64]int64, error) {
	rows, err := s.db.Fresh().Query(ctx, `SELECT item_id, SUM(quantity) FROM order_lines GROUP BY item_id`)
	if err != nil {
		return nil, fmt.Errorf("sales per item: %w", err)
	}
	defer rows.Close()
	sales := map[int64]int64{}
	for rows.Next() {
		var item, units int64
		if err := rows.Scan(&item, &units); err != nil {
			return nil, fmt.Errorf("sales per item: %w", err)
		}
		sales[item] = units
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sales per item: %w", err)
	}
	return sales, nil
}

// OrdersByStatus is the newest orders in status (highest id first), at
// most limit, without their lines.
func (s *Store) OrdersByStatus(ctx context.Context, status shop.Status, limit int) ([]shop.Order, error) {
	orders, err := query(ctx, s.db.Fresh(), scanOrder,
		`SELECT `+orderColumns+` FROM orders WHERE status = ? ORDER BY id DESC LIMIT ?`, string(status), limit)
	if err != nil {
		return nil, fmt.Errorf("orders by status: %w", err)
	}
	return orders, nil
}
