package shard_test

import (
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/shard"
)

// TestBalancedStaysWithinTenPercentOfTheMean holds the goal (no
// shard over 1.1x the mean with 1,024 buckets) for S = 2..8, and the
// stronger rule behind it for every S a map may have: shards differ by
// at most one bucket.
func TestBalancedStaysWithinTenPercentOfTheMean(t *testing.T) {
	m, err := shard.Balanced(1)
	if err != nil {
		t.Fatal(err)
	}
	for s := 2; s <= shard.MaxShards; s++ {
		m = m.Grow()
		if m.Shards() != s {
			t.Fatalf("grown to %d shards, map says %d", s, m.Shards())
		}
		lo, hi, total := shard.Buckets, 0, 0
		for _, n := range m.Counts() {
			lo, hi, total = min(lo, n), max(hi, n), total+n
		}
		if total != shard.Buckets || hi-lo > 1 {
			t.Fatalf("S=%d: %v buckets, shards own %d to %d; want %d in all, within one of each other", s, total, lo, hi, shard.Buckets)
		}
		if mean := float64(shard.Buckets) / float64(s); s <= 8 && float64(hi) > 1.1*mean {
			t.Errorf("S=%d: largest shard owns %d buckets, over 1.1x the mean %.1f", s, hi, mean)
		}
	}
}

// TestGrowMovesOnlyWhatTheNewShardTakes: adding a shard to S moves
// floor(1024/(S+1)) buckets, about 1/(S+1) of the data, all of them to
// the new shard; no bucket moves between old shards.
func TestGrowMovesOnlyWhatTheNewShardTakes(t *testing.T) {
	m, _ := shard.Balanced(1)
	for s := 1; s < shard.MaxShards; s++ {
		grown := m.Grow()
		moves := shard.Moves(m, grown)
		if want := shard.Buckets / (s + 1); len(moves) != want {
			t.Fatalf("%d -> %d shards moved %d buckets, want %d", s, s+1, len(moves), want)
		}
		for _, mv := range moves {
			if mv.To != s {
				t.Fatalf("%d -> %d shards moved bucket %d from shard %d to old shard %d", s, s+1, mv.Bucket, mv.From, mv.To)
			}
		}
		m = grown
	}
}

// TestBalancedIsAFunctionOfTheShardCount: every replica started with the
// same --db list computes the same map.
func TestBalancedIsAFunctionOfTheShardCount(t *testing.T) {
	for _, s := range []int{1, 2, 3, 7, 8, 100} {
		a, _ := shard.Balanced(s)
		b, _ := shard.Balanced(s)
		if !a.Equal(b) {
			t.Fatalf("Balanced(%d) differs between two calls", s)
		}
	}
	two, _ := shard.Balanced(2)
	if got := two.String(); got != "shardmap/1 shards=2 0-511:1 512-1023:2" {
		t.Errorf("Balanced(2) = %q", got)
	}
}

func TestBalancedRefusesImpossibleCounts(t *testing.T) {
	for _, s := range []int{-1, 0, shard.MaxShards + 1} {
		if _, err := shard.Balanced(s); err == nil || !strings.Contains(err.Error(), "want 1 to 1024") {
			t.Errorf("Balanced(%d) error = %v, want one naming the range", s, err)
		}
	}
}

func TestMapTextRoundTrips(t *testing.T) {
	for _, s := range []int{1, 2, 3, 5, 8, 33, shard.MaxShards} {
		m, _ := shard.Balanced(s)
		text, err := m.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		back, err := shard.ParseMap(string(text))
		if err != nil {
			t.Fatalf("S=%d: ParseMap(%q): %v", s, text, err)
		}
		if !back.Equal(m) {
			t.Fatalf("S=%d: %q read back as %q", s, text, back)
		}
	}
}

func TestParseMapSaysWhatIsWrong(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"empty", "", `must start "shardmap/1 shards=N"`},
		{"other format", "shardmap/2 shards=1 0-1023:1", `must start "shardmap/1 shards=N"`},
		{"no count", "shardmap/1 0-1023:1", `"0-1023:1" must be shards=N with N from 1 to 1024`},
		{"zero shards", "shardmap/1 shards=0", "must be shards=N"},
		{"too many shards", "shardmap/1 shards=1025", "must be shards=N"},
		{"no owner", "shardmap/1 shards=1 0-1023", `"0-1023" must be FIRST-LAST:SHARD`},
		{"reversed range", "shardmap/1 shards=1 9-3:1", `"9-3:1": buckets must be FIRST-LAST`},
		{"bucket past the end", "shardmap/1 shards=1 0-1024:1", "LAST <= 1023"},
		{"leading zero", "shardmap/1 shards=1 00-1023:1", "buckets must be"},
		{"shard zero", "shardmap/1 shards=2 0-511:0 512-1023:2", `"0-511:0": shard must be 1 to 2`},
		{"shard past the count", "shardmap/1 shards=2 0-511:1 512-1023:3", "shard must be 1 to 2"},
		{"overlap", "shardmap/1 shards=2 0-600:1 512-1023:2", `bucket 512 has two owners (again in "512-1023:2")`},
		{"gap", "shardmap/1 shards=2 0-500:1 512-1023:2", "buckets 501-511 have no shard"},
		{"nothing owned", "shardmap/1 shards=1", "buckets 0-1023 have no shard"},
		{"huge", "shardmap/1 shards=1 " + strings.Repeat("0:1 ", 5000), "longer than any map"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := shard.ParseMap(tt.text)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseMap(%.60q) error = %v, want one containing %q", tt.text, err, tt.want)
			}
		})
	}
}

// TestParseMapAcceptsAnEmptyShard: a shard being added owns nothing until
// its first bucket is switched to it, and the map says so.
func TestParseMapAcceptsAnEmptyShard(t *testing.T) {
	m, err := shard.ParseMap("shardmap/1 shards=3 0-511:1 512-1023:2")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Counts(); got[2] != 0 || got[0] != 512 {
		t.Fatalf("counts %v", got)
	}
}

func FuzzParseMap(f *testing.F) {
	for _, s := range []int{1, 2, 3, 8} {
		m, _ := shard.Balanced(s)
		f.Add(m.String())
	}
	f.Add("shardmap/1 shards=2 0-600:1 512-1023:2")
	f.Add("shardmap/1 shards=1 7:1 0-6:1 8-1023:1")
	f.Fuzz(func(t *testing.T, text string) {
		m, err := shard.ParseMap(text)
		if err != nil {
			return
		}
		total := 0
		for _, n := range m.Counts() {
			total += n
		}
		if total != shard.Buckets {
			t.Fatalf("%q parsed to a map owning %d buckets", text, total)
		}
		back, err := shard.ParseMap(m.String())
		if err != nil || !back.Equal(m) {
			t.Fatalf("%q: its own text %q does not read back: %v", text, m.String(), err)
		}
	})
}

func TestMapRoutesTokensAndIDsToTheSameShard(t *testing.T) {
	m, _ := shard.Balanced(3)
	for range 200 {
		_, hash := shop.NewToken()
		s, b, err := m.ShardOfTokenHash(hash)
		if err != nil {
			t.Fatal(err)
		}
		session, _ := shard.MakeID(77, b)
		order, _ := shard.MakeID(5<<30|12, b)
		for _, id := range []int64{session, order} {
			if got, err := m.ShardOfID("order", id); err != nil || got != s {
				t.Fatalf("token in bucket %d is on shard %d, its id %d on %d (%v)", b, s, id, got, err)
			}
		}
	}
	if _, _, err := m.ShardOfTokenHash("nope"); shop.ErrorCode(err) != shop.EUNAUTHORIZED {
		t.Errorf("bad hash: %v", err)
	}
	if _, err := m.ShardOfID("order", 7); shop.ErrorCode(err) != shop.ENOTFOUND {
		t.Errorf("unsharded id: %v", err)
	}
}

// Adding a shard to a map gives it nothing; switching one bucket changes
// that bucket's owner only; both refuse what no map can hold.
func TestWithShardsAndWithOwnerChangeOnlyWhatTheySay(t *testing.T) {
	two, err := shard.Balanced(2)
	if err != nil {
		t.Fatal(err)
	}
	three, err := two.WithShards(3)
	if err != nil {
		t.Fatal(err)
	}
	if got := three.Counts(); got[0] != 512 || got[1] != 512 || got[2] != 0 {
		t.Fatalf("grown to 3 shards, counts %v, want [512 512 0]", got)
	}
	if back, err := shard.ParseMap(three.String()); err != nil || !back.Equal(three) {
		t.Fatalf("%q does not read back: %v", three, err)
	}
	moved, err := three.WithOwner(700, 2)
	if err != nil {
		t.Fatal(err)
	}
	if ms := shard.Moves(three, moved); len(ms) != 1 || ms[0] != (shard.Move{Bucket: 700, From: 1, To: 2}) {
		t.Fatalf("one switch made the moves %v", ms)
	}
	for _, bad := range []func() error{
		func() error { _, err := three.WithShards(2); return err },
		func() error { _, err := three.WithShards(shard.MaxShards + 1); return err },
		func() error { _, err := three.WithOwner(1, 3); return err },
		func() error { _, err := three.WithOwner(1, -1); return err },
		func() error { _, err := three.WithOwner(shard.Buckets, 0); return err },
	} {
		if err := bad(); err == nil {
			t.Error("an impossible map was made")
		}
	}
}
