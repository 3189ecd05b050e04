package redis

import (
	"context"
	"strconv"
)

// GetMenu returns the encoded representations of a catalog version's menu
// that some replica stored (coding name to bytes); ok is false on a miss or
// while Redis is not in use.
func (c *Client) GetMenu(ctx context.Context, version int64) (map[string][]byte, bool) {
	if !c.Up() {
		c.fallback("menu")
		return nil, false
	}
	var fields map[string]string
	err := c.call(ctx, func(ctx context.Context) (err error) {
		fields, err = c.rdb.HGetAll(ctx, c.menuKey(version)).Result()
		return err
	})
	if c.failed(ctx, err) {
		c.fallback("menu")
		return nil, false
	}
	c.lookup("menu", len(fields) > 0)
	if len(fields) == 0 {
		return nil, false
	}
	out := make(map[string][]byte, len(fields))
	for k, v := range fields {
		out[k] = []byte(v)
	}
	return out, true
}

// PutMenu stores a version's encoded menu for the other replicas (two
// replicas building one version at once store the same bytes).
func (c *Client) PutMenu(ctx context.Context, version int64, bodies map[string][]byte) {
	if !c.Up() {
		return
	}
	key := c.menuKey(version)
	args := make([]any, 0, 2*len(bodies))
	for k, v := range bodies {
		args = append(args, k, v)
	}
	c.failed(ctx, c.call(ctx, func(ctx context.Context) error {
		pipe := c.rdb.TxPipeline()
		pipe.HSet(ctx, key, args...)
		pipe.Expire(ctx, key, c.cfg.MenuTTL)
		_, err := pipe.Exec(ctx)
		return err
	}))
}

func (c *Client) menuKey(version int64) string {
	return c.key("menu", strconv.FormatInt(version, 10))
}
