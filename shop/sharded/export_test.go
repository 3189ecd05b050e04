package sharded

import "github.com/perfscale/perfscale/shop/shard"

// StopBeforeCredit calls f with every transfer debited, before its
// credit: a test holds a transfer there.
func (s *Store) StopBeforeCredit(f func(t shard.Transfer)) { s.hooks.beforeCredit = f }

// StopAfterQuotaSet calls f after an admin stock change set shard k's
// quota, before the next shard's.
func (s *Store) StopAfterQuotaSet(f func(k int)) { s.hooks.afterQuotaSet = f }
