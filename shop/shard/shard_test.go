package shard_test

import (
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/shard"
)

// TestTokensSpreadOverTheBuckets: sessions made with shop.NewToken land
// on every shard of a map alike (the hash is uniform; this catches a
// decoder that reads the wrong bits, e.g. always bucket 0 or only even
// buckets).
func TestTokensSpreadOverTheBuckets(t *testing.T) {
	const sessions = 40_000
	m, _ := shard.Balanced(4)
	perShard := make([]int, m.Shards())
	var seen [shard.Buckets]bool
	for range sessions {
		_, hash := shop.NewToken()
		b, err := shard.BucketOfTokenHash(hash)
		if err != nil {
			t.Fatal(err)
		}
		seen[b] = true
		perShard[m.Owner(b)]++
	}
	for b, ok := range seen {
		if !ok {
			t.Fatalf("no session of %d landed in bucket %d", sessions, b)
		}
	}
	// 10,000 expected per shard, standard deviation about 87: 8 % off
	// is more than 9 deviations, not chance.
	for s, n := range perShard {
		if n < 9_200 || n > 10_800 {
			t.Errorf("shard %d of 4 got %d of %d sessions", s+1, n, sessions)
		}
	}
}

func TestBucketOfTokenHashReadsTheTopTenBits(t *testing.T) {
	tests := []struct {
		prefix string
		want   shard.Bucket
	}{
		{"0000", 0},
		{"003f", 0},
		{"0040", 1},
		{"ffc0", 1023},
		{"ffff", 1023},
		{"8000", 512},
	}
	for _, tt := range tests {
		hash := tt.prefix + strings.Repeat("a", 60)
		got, err := shard.BucketOfTokenHash(hash)
		if err != nil || got != tt.want {
			t.Errorf("BucketOfTokenHash(%s...) = %d, %v; want %d", tt.prefix, got, err, tt.want)
		}
	}
}

func TestBucketOfTokenHashRefusesWhatHashTokenNeverWrites(t *testing.T) {
	for _, hash := range []string{
		"",
		strings.Repeat("a", 63),
		strings.Repeat("a", 65),
		"ABCD" + strings.Repeat("a", 60), // HashToken writes lowercase
		strings.Repeat("a", 63) + "g",
	} {
		_, err := shard.BucketOfTokenHash(hash)
		if shop.ErrorCode(err) != shop.EUNAUTHORIZED {
			t.Errorf("BucketOfTokenHash(%q) error = %v, want EUNAUTHORIZED", hash, err)
		}
	}
}

func TestIDsCarryTheirBucket(t *testing.T) {
	for _, tt := range []struct {
		seq int64
		b   shard.Bucket
	}{{1, 0}, {1, 1023}, {12345, 77}, {shard.MaxSeq, 1023}} {
		id, err := shard.MakeID(tt.seq, tt.b)
		if err != nil {
			t.Fatal(err)
		}
		b, err := shard.BucketOfID("order", id)
		if err != nil || b != tt.b || shard.SeqOfID(id) != tt.seq {
			t.Errorf("MakeID(%d, %d) = %d, read back as seq %d bucket %d (%v)", tt.seq, tt.b, id, shard.SeqOfID(id), b, err)
		}
		if id >= 1<<53 {
			t.Errorf("MakeID(%d, %d) = %d, past 2^53: JavaScript clients would round it", tt.seq, tt.b, id)
		}
	}
}

func TestMakeIDRefusesWhatDoesNotFit(t *testing.T) {
	for _, tt := range []struct {
		seq  int64
		b    shard.Bucket
		want string
	}{
		{0, 0, "sequence 0 out of range"},
		{-5, 0, "sequence -5 out of range"},
		{shard.MaxSeq + 1, 0, "out of range"},
		{1, shard.Buckets, "bucket 1024 out of range 0..1023"},
	} {
		if _, err := shard.MakeID(tt.seq, tt.b); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("MakeID(%d, %d) error = %v, want %q", tt.seq, tt.b, err, tt.want)
		}
	}
}

// TestBucketOfIDRefusesIdsNoShardMade: an unsharded store's small ids,
// and ids past 2^53, are unknown ids (ENOTFOUND), not bucket 5.
func TestBucketOfIDRefusesIdsNoShardMade(t *testing.T) {
	for _, id := range []int64{-1, 0, 5, 1023, 1 << 53, 1<<63 - 1} {
		_, err := shard.BucketOfID("session", id)
		if shop.ErrorCode(err) != shop.ENOTFOUND || !strings.Contains(err.Error(), "no session") {
			t.Errorf("BucketOfID(%d) error = %v, want ENOTFOUND naming the session", id, err)
		}
	}
}

func FuzzBucketOfTokenHash(f *testing.F) {
	_, hash := shop.NewToken()
	f.Add(hash)
	f.Add(strings.Repeat("f", 64))
	f.Add("")
	f.Fuzz(func(t *testing.T, hash string) {
		b, err := shard.BucketOfTokenHash(hash)
		if err != nil {
			if shop.ErrorCode(err) != shop.EUNAUTHORIZED {
				t.Fatalf("%q: error %v is not EUNAUTHORIZED", hash, err)
			}
			return
		}
		if b >= shard.Buckets {
			t.Fatalf("%q: bucket %d", hash, b)
		}
		// Only what HashToken writes is accepted: 64 lowercase hex digits.
		if len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
			t.Fatalf("%q accepted as a token hash", hash)
		}
	})
}

func FuzzBucketOfID(f *testing.F) {
	f.Add(int64(1024))
	f.Add(int64(5))
	f.Add(int64(1<<53 - 1))
	f.Fuzz(func(t *testing.T, id int64) {
		b, err := shard.BucketOfID("order", id)
		if err != nil {
			return
		}
		back, err := shard.MakeID(shard.SeqOfID(id), b)
		if err != nil || back != id {
			t.Fatalf("id %d: bucket %d seq %d makes %d (%v)", id, b, shard.SeqOfID(id), back, err)
		}
	})
}
