package cache

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// VersionSource is where the catalog version is read: the store.
type VersionSource interface {
	CatalogVersion(ctx context.Context) (int64, error)
}

// VersionConfig tunes a Version; zero values take the defaults.
type VersionConfig struct {
	// PollInterval is how often the source is read, which bounds how late
	// a change made by another process is seen (1 s).
	PollInterval time.Duration
	// Feed, if set, brings other replicas' changes sooner than the poll.
	Feed   Feed
	Logger *slog.Logger
}

// Version is the catalog version known to this process, kept in memory:
// read once at start, then polled, moved on by the Feed, and moved at once
// by changes made here. Everything cached under a catalog version (items
// and pages here, carts in the Redis layer) is judged fresh against it, so
// it is built first and handed to each layer that needs it.
type Version struct {
	source VersionSource
	cfg    VersionConfig
	v      atomic.Int64
}

// NewVersion reads the source's version once and returns it. Call Run to
// keep it current.
func NewVersion(ctx context.Context, source VersionSource, cfg VersionConfig) (*Version, error) {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	v := &Version{source: source, cfg: cfg}
	if err := v.Poll(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// CatalogVersion is the version known in memory: no store call.
func (v *Version) CatalogVersion(context.Context) (int64, error) { return v.v.Load(), nil }

// Run keeps the version current until ctx ends: a poll every
// PollInterval, and the Feed's announcements as they come.
func (v *Version) Run(ctx context.Context) {
	if v.cfg.Feed != nil {
		go func() {
			if err := v.cfg.Feed.Subscribe(ctx, v.observe); err != nil && ctx.Err() == nil {
				v.cfg.Logger.Warn("catalog version feed stopped; the poll carries on", "error", err.Error())
			}
		}()
	}
	t := time.NewTicker(v.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := v.Poll(ctx); err != nil && ctx.Err() == nil {
				v.cfg.Logger.Warn("catalog version poll failed", "error", err.Error())
			}
		}
	}
}

// Poll reads the source's version once.
func (v *Version) Poll(ctx context.Context) error {
	n, err := v.source.CatalogVersion(ctx)
	if err != nil {
		return fmt.Errorf("poll catalog version: %w", err)
	}
	v.observe(n)
	return nil
}

// observe moves the known version forward: versions only grow.
func (v *Version) observe(n int64) {
	for {
		old := v.v.Load()
		if n <= old || v.v.CompareAndSwap(old, n) {
			return
		}
	}
}

// changed is called after this process changed the catalog: it reads the
// new version at once and tells the other replicas.
func (v *Version) changed(ctx context.Context) {
	before := v.v.Load()
	if err := v.Poll(ctx); err != nil {
		v.cfg.Logger.WarnContext(ctx, "catalog version after a change", "error", err.Error())
		return
	}
	if now := v.v.Load(); now != before && v.cfg.Feed != nil {
		if err := v.cfg.Feed.Publish(ctx, now); err != nil {
			v.cfg.Logger.WarnContext(ctx, "publish catalog version", "error", err.Error())
		}
	}
}
