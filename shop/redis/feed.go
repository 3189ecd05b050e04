package redis

import (
	"context"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Publish announces a catalog version on the catalog channel (the
// in-process caches' Feed). A lost announcement costs only freshness: each
// replica's version poll is the safety net.
func (c *Client) Publish(ctx context.Context, version int64) error {
	if !c.Up() {
		return nil // the poll carries it
	}
	// A failure is logged once, as Redis going away; the poll carries the
	// version.
	c.failed(ctx, c.call(ctx, func(ctx context.Context) error {
		return c.rdb.Publish(ctx, c.key("catalog"), strconv.FormatInt(version, 10)).Err()
	}))
	return nil
}

// Subscribe calls fn with each version announced on the catalog channel
// until ctx ends. go-redis resubscribes by itself after Redis returns.
func (c *Client) Subscribe(ctx context.Context, fn func(version int64)) error {
	sub := c.rdb.Subscribe(ctx, c.key("catalog"))
	defer sub.Close()
	ch := sub.Channel(goredis.WithChannelHealthCheckInterval(5 * time.Second))
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			if v, err := strconv.ParseInt(m.Payload, 10, 64); err == nil {
				fn(v)
			}
		}
	}
}
