package shard

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Map says which shard owns each bucket. Shards are numbered from 0 in
// the code (the index of a shard's URL in --db) and from 1 in the text
// form and in messages, as the cluster's kill-db K does.
type Map struct {
	shards int
	owner  [Buckets]uint16
}

// Balanced is the map of s shards every replica computes alike from s
// alone: one shard owns every bucket, and each further shard is added by
// Grow. Every shard owns floor or ceil of Buckets/s buckets.
func Balanced(s int) (*Map, error) {
	if s < 1 || s > MaxShards {
		return nil, fmt.Errorf("shard map: %d shards, want 1 to %d", s, MaxShards)
	}
	m := &Map{shards: 1}
	for m.shards < s {
		m = m.Grow()
	}
	return m, nil
}

// Shards is how many shards the map spreads the buckets over.
func (m *Map) Shards() int { return m.shards }

// Owner is the shard (from 0) that owns bucket b.
func (m *Map) Owner(b Bucket) int { return int(m.owner[b]) }

// Counts is how many buckets each shard owns.
func (m *Map) Counts() []int {
	c := make([]int, m.shards)
	for _, o := range m.owner {
		c[o]++
	}
	return c
}

// Grow returns the map with one shard more, which takes over the fewest
// buckets that leave every shard within one bucket of the others:
// floor(Buckets/(S+1)) of them, each from a shard that had more than its
// new share, and no other bucket changes owner. (A consistent hash such
// as jump hash moves about as many, but with only 1,024 keys it leaves
// the largest shard 9 % over the mean at 8 shards and 30 % at 16:
// docs/sharding.md.) That holds for a balanced map, as Balanced makes;
// grown from an unbalanced one (read by ParseMap in the middle of a
// resharding), the map is still whole but not balanced. The map must have
// fewer than MaxShards shards.
func (m *Map) Grow() *Map {
	if m.shards >= MaxShards {
		panic(fmt.Sprintf("shard map: cannot grow past %d shards", MaxShards))
	}
	n := m.shards + 1
	share, extra := Buckets/n, Buckets%n
	counts := m.Counts()
	// The old shards with the most buckets keep the extra ones, so none
	// has to take a bucket back (ties: the lower shard).
	order := make([]int, m.shards)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return counts[order[i]] > counts[order[j]] })
	surplus := make([]int, m.shards)
	for rank, s := range order {
		keep := share
		if rank < extra {
			keep++
		}
		surplus[s] = counts[s] - keep
	}
	grown := &Map{shards: n, owner: m.owner}
	// Each old shard gives up its highest buckets: the choice is arbitrary
	// (buckets are uniform), but it must be the same on every replica.
	for b := Buckets - 1; b >= 0; b-- {
		if o := m.owner[b]; surplus[o] > 0 {
			surplus[o]--
			grown.owner[b] = uint16(n - 1) // #nosec G115 -- n <= MaxShards
		}
	}
	return grown
}

// Move is one bucket changing owner.
type Move struct {
	Bucket   Bucket
	From, To int
}

// Moves lists the buckets whose owner differs between from and to, in
// bucket order: the work of a resharding from one map to the other.
func Moves(from, to *Map) []Move {
	var moves []Move
	for b := range Buckets {
		if from.owner[b] != to.owner[b] {
			moves = append(moves, Move{Bucket: Bucket(b), From: int(from.owner[b]), To: int(to.owner[b])})
		}
	}
	return moves
}

// mapHeader starts the text form; the number is the format's version.
const mapHeader = "shardmap/1"

// MarshalText writes the map as one line: the header, the number of
// shards, and runs of buckets with their owner numbered from 1:
// "shardmap/1 shards=2 0-511:1 512-1023:2".
func (m *Map) MarshalText() ([]byte, error) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s shards=%d", mapHeader, m.shards)
	for start := 0; start < Buckets; {
		end := start
		for end+1 < Buckets && m.owner[end+1] == m.owner[start] {
			end++
		}
		if start == end {
			fmt.Fprintf(&sb, " %d:%d", start, m.owner[start]+1)
		} else {
			fmt.Fprintf(&sb, " %d-%d:%d", start, end, m.owner[start]+1)
		}
		start = end + 1
	}
	return []byte(sb.String()), nil
}

// String is the text form.
func (m *Map) String() string {
	b, _ := m.MarshalText()
	return string(b)
}

// maxMapText bounds the text a map is read from: the longest map has one
// run per bucket, "1023:1024 " at most.
const maxMapText = 64 + Buckets*len("1023-1023:1024 ")

// ParseMap reads a map's text form (MarshalText), checking that every
// bucket has exactly one owner, a shard from 1 to N; an error
// says what is wrong and where.
func ParseMap(text string) (*Map, error) {
	if len(text) > maxMapText {
		return nil, fmt.Errorf("shard map: %d bytes, longer than any map (%d)", len(text), maxMapText)
	}
	fields := strings.Fields(text)
	if len(fields) < 2 || fields[0] != mapHeader {
		return nil, fmt.Errorf("shard map: must start %q, got %.40q", mapHeader+" shards=N", text)
	}
	count, ok := strings.CutPrefix(fields[1], "shards=")
	shards, err := strconv.Atoi(count)
	if !ok || err != nil || shards < 1 || shards > MaxShards {
		return nil, fmt.Errorf("shard map: %q must be shards=N with N from 1 to %d", fields[1], MaxShards)
	}
	m := &Map{shards: shards}
	var seen [Buckets]bool
	for _, run := range fields[2:] {
		first, last, owner, err := parseRun(run, shards)
		if err != nil {
			return nil, err
		}
		for b := first; b <= last; b++ {
			if seen[b] {
				return nil, fmt.Errorf("shard map: bucket %d has two owners (again in %q)", b, run)
			}
			seen[b] = true
			m.owner[b] = uint16(owner) // #nosec G115 -- owner < shards <= MaxShards, checked above
		}
	}
	if err := m.checkCoverage(seen); err != nil {
		return nil, err
	}
	return m, nil
}

// parseRun reads "first-last:shard" or "bucket:shard"; owner is from 0.
func parseRun(run string, shards int) (first, last, owner int, err error) {
	span, shard, ok := strings.Cut(run, ":")
	if !ok {
		return 0, 0, 0, fmt.Errorf("shard map: %q must be FIRST-LAST:SHARD or BUCKET:SHARD", run)
	}
	lo, hi, isRange := strings.Cut(span, "-")
	if first, err = parseNumber(lo, 0, Buckets-1); err == nil {
		last = first
		if isRange {
			last, err = parseNumber(hi, first, Buckets-1)
		}
	}
	if err != nil {
		return 0, 0, 0, fmt.Errorf("shard map: %q: buckets must be FIRST-LAST with 0 <= FIRST <= LAST <= %d", run, Buckets-1)
	}
	o, err := parseNumber(shard, 1, shards)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("shard map: %q: shard must be 1 to %d", run, shards)
	}
	return first, last, o - 1, nil
}

var errNumber = errors.New("not a number in range")

// parseNumber reads a plain decimal from lo to hi.
func parseNumber(s string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi || strconv.Itoa(n) != s {
		return 0, errNumber
	}
	return n, nil
}

// checkCoverage: every bucket has an owner. A shard may own none: a shard
// being added owns nothing until its first bucket is switched to it.
func (m *Map) checkCoverage(seen [Buckets]bool) error {
	for b, ok := range seen {
		if !ok {
			end := b
			for end+1 < Buckets && !seen[end+1] {
				end++
			}
			return fmt.Errorf("shard map: buckets %d-%d have no shard", b, end)
		}
	}
	return nil
}

// Equal reports whether two maps give every bucket the same owner.
func (m *Map) Equal(o *Map) bool { return m.shards == o.shards && m.owner == o.owner }

// ShardOfTokenHash is the shard (from 0) that holds the session whose
// token hashes to tokenHash, and its bucket.
func (m *Map) ShardOfTokenHash(tokenHash string) (int, Bucket, error) {
	b, err := BucketOfTokenHash(tokenHash)
	if err != nil {
		return 0, 0, err
	}
	return m.Owner(b), b, nil
}

// ShardOfID is the shard (from 0) that holds the session or order id
// (what names it in the error).
func (m *Map) ShardOfID(what string, id int64) (int, error) {
	b, err := BucketOfID(what, id)
	if err != nil {
		return 0, err
	}
	return m.Owner(b), nil
}

// StoredMap is the map as the catalog's home stores it once it is not
// Balanced of the shard count (during and after a resharding): its text
// form, an epoch that moves with every change, and the buckets whose
// writes are held while their owner is switched.
type StoredMap struct {
	Epoch  int64
	Text   string
	Moving []Bucket
}

// WithShards is the map with n shards, the added ones owning no bucket
// yet: the first step of adding a shard (docs/sharding.md). n must be
// from m.Shards() to MaxShards.
func (m *Map) WithShards(n int) (*Map, error) {
	if n < m.shards || n > MaxShards {
		return nil, fmt.Errorf("shard map: %d shards, want %d to %d", n, m.shards, MaxShards)
	}
	return &Map{shards: n, owner: m.owner}, nil
}

// WithOwner is the map with bucket b owned by shard k (from 0): one
// bucket's switch in a move.
func (m *Map) WithOwner(b Bucket, k int) (*Map, error) {
	if k < 0 || k >= m.shards {
		return nil, fmt.Errorf("shard map: shard %d, want 1 to %d", k+1, m.shards)
	}
	if int(b) >= Buckets {
		return nil, fmt.Errorf("shard map: bucket %d, want 0 to %d", b, Buckets-1)
	}
	grown := &Map{shards: m.shards, owner: m.owner}
	grown.owner[b] = uint16(k) // #nosec G115 -- k < shards <= MaxShards
	return grown, nil
}

// Fence is a bucket's fence on one shard while buckets move
// (docs/sharding.md): whether the shard refuses the bucket's writes, and
// why.
type Fence string

const (
	FenceNone     Fence = ""         // none: the shard takes the bucket's writes if it owns it
	FenceIncoming Fence = "incoming" // being copied here; not yet this shard's
	FenceGone     Fence = "gone"     // frozen here to move away; never written here again
)

// MapReader is a process that routes by the stored map, as it last
// reported: the epoch of the map it routes by, and how long ago it said
// so (on the catalog home's clock). shop reshard waits for every reader
// seen lately to route by a map before it moves or forgets buckets.
type MapReader struct {
	Process string
	Epoch   int64
	Age     time.Duration
}
