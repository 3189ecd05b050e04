// Package shard says where a session and everything that belongs to it
// lives when the orders are spread over several PostgreSQL servers
// (shards): a fixed set of Buckets virtual buckets, a session's bucket
// taken from the hash of its token (so any replica knows it without a
// lookup), the bucket carried in the low bits of every session and order
// id (so a call that names only an id is routed too), and the Map that
// says which shard owns each bucket, balanced to within one bucket and
// grown by moving only the buckets a new shard takes over. It imports no
// database or transport code: the sharded store, the resharding command
// and the cluster all read the same rules from here. docs/sharding.md
// has the design.
package shard

import (
	"fmt"

	"github.com/perfscale/perfscale/shop"
)

// Buckets is the fixed number of virtual buckets. It never changes for a
// deployment: a session's bucket is part of its ids. 1,024 buckets keep
// every shard within one bucket of the mean up to MaxShards, so the
// largest of S shards holds at most 1 + S/1024 times its share.
const Buckets = 1 << bucketBits

// bucketBits is log2(Buckets): the low bits of an id that hold its bucket.
const bucketBits = 10

// MaxShards is the most shards a Map may have: every shard owns at least
// one bucket.
const MaxShards = Buckets

// Bucket is one of the Buckets virtual buckets, 0 to Buckets-1.
type Bucket uint16

// tokenHashLen is the length of shop.HashToken's hex SHA-256.
const tokenHashLen = 64

// BucketOfTokenHash is the bucket of the session whose token hashes to
// tokenHash (shop.HashToken): the top 10 bits of the SHA-256, uniform
// over the buckets because the token is 256 random bits. Replicas hash
// every token they are sent already, so routing a request costs no
// lookup. A hash that is not 64 hex digits is EUNAUTHORIZED: no session
// has it.
func BucketOfTokenHash(tokenHash string) (Bucket, error) {
	if len(tokenHash) != tokenHashLen {
		return 0, shop.Errorf(shop.EUNAUTHORIZED, "session token hash must be %d hex digits, got %d characters", tokenHashLen, len(tokenHash))
	}
	var top uint16
	for i := 0; i < len(tokenHash); i++ {
		d, ok := hexDigit(tokenHash[i])
		if !ok {
			return 0, shop.Errorf(shop.EUNAUTHORIZED, "session token hash must be hex digits, got %q at %d", tokenHash[i], i)
		}
		if i < 4 {
			top = top<<4 | uint16(d)
		}
	}
	return Bucket(top >> (16 - bucketBits)), nil
}

// hexDigit reads one lowercase hex digit, as shop.HashToken writes them.
func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// MaxSeq is the largest sequence number an id can carry: ids stay below
// 2^53, so JavaScript clients read them exactly.
const MaxSeq = 1<<(53-bucketBits) - 1

// MakeID is the id of the seq-th row a shard numbered in bucket b: seq in
// the high bits, the bucket in the low 10. An order's seq is its month
// and serial (month<<30 | serial: the monthly partitions read the month
// from bits 40 up); a session's is a plain sequence. Ids of different buckets never
// collide, and a bucket's rows keep their ids when the bucket moves (the
// new owner's sequence is set past the old one's first: docs/sharding.md).
func MakeID(seq int64, b Bucket) (int64, error) {
	if seq < 1 || seq > MaxSeq {
		return 0, fmt.Errorf("sharded id: sequence %d out of range 1..%d", seq, int64(MaxSeq))
	}
	if b >= Buckets {
		return 0, fmt.Errorf("sharded id: bucket %d out of range 0..%d", b, Buckets-1)
	}
	return seq<<bucketBits | int64(b), nil
}

// BucketOfID is the bucket a session or order id was made in (MakeID). An
// id no shard could have made (below 1,024 or above 2^53) is ENOTFOUND,
// named what it is ("session", "order"), as an unknown id is anywhere.
func BucketOfID(what string, id int64) (Bucket, error) {
	if id < 1<<bucketBits || id>>bucketBits > MaxSeq {
		return 0, shop.Errorf(shop.ENOTFOUND, "no %s %d: not an id of a sharded store", what, id)
	}
	return Bucket(id & (Buckets - 1)), nil
}

// SeqOfID is the sequence number MakeID put in id.
func SeqOfID(id int64) int64 { return id >> bucketBits }

// Transfer is a move of quota (escrow, docs/sharding.md) between shards:
// Units of Item debited on the shard that records it, for shard To (from
// 0). ID makes its credit apply once however often it is retried. Epoch
// is the number of the admin stock change the donor's quota was set by
// when it was debited: the receiver credits it at that epoch only
// (Credit).
type Transfer struct {
	ID    string
	Item  int64
	Units int64
	To    int
	Epoch int64
}

// Credit is what a receiver did with a transfer's credit.
type Credit int

const (
	// Credited: the units were added to the receiver's quota.
	Credited Credit = iota
	// CreditedBefore: an earlier credit of the transfer was done (added
	// or dropped); this one did nothing.
	CreditedBefore
	// Superseded: an admin stock change set the receiver's quota after
	// the donor was debited (and set the donor's after the debit too), so
	// the units are in that change's figure: dropped, recorded as done.
	Superseded
	// Waits: the receiver has not yet had the admin change the donor's
	// quota was set by when it was debited, which will replace the
	// receiver's quota: credited now, the units would be lost. The
	// transfer stays sent; a credit after the change adds them.
	Waits
)

// Share is shard k's (from 0) quota of a stock of n units over s shards:
// n/s each, the first n%s shards one more, so the shares add up to n and
// the catalog's home (shard 0) has none only when n is 0.
func Share(n int64, s, k int) int64 {
	q := n / int64(s)
	if int64(k) < n%int64(s) {
		q++
	}
	return q
}
