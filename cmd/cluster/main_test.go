package main

import (
	"errors"
	"slices"
	"testing"
)

// The shop is given one --db per shard in shard order, and --shards with
// more than one; with one, the flags of before shards.
func TestDBArgs(t *testing.T) {
	one := config{Databases: []database{{URL: "postgres://a/x"}}}
	if got, want := one.dbArgs(), []string{"--db", "postgres://a/x"}; !slices.Equal(got, want) {
		t.Errorf("one shard: %q, want %q", got, want)
	}
	three := config{Shards: 3, Databases: []database{{URL: "postgres://a/x_s1"}, {URL: "postgres://b/x_s2"}, {URL: "postgres://c/x_s3"}}}
	want := []string{"--db", "postgres://a/x_s1", "--db", "postgres://b/x_s2", "--db", "postgres://c/x_s3", "--shards", "3"}
	if got := three.dbArgs(); !slices.Equal(got, want) {
		t.Errorf("three shards: %q, want %q", got, want)
	}
	if got := (config{Name: "n", Shards: 2}).shardDatabase(2); got != "n_s2" {
		t.Errorf("shard 2's database: %q", got)
	}
	if got := (config{Name: "n"}).shardDatabase(1); got != "n" {
		t.Errorf("the one shard's database: %q", got)
	}
}

func TestParseShards(t *testing.T) {
	for _, tt := range []struct {
		args   []string
		shards int
		bad    bool
	}{
		{[]string{"up", "2"}, 1, false},
		{[]string{"up", "2", "--shards", "4"}, 4, false},
		{[]string{"up", "2", "--shards=16"}, 16, false},
		{[]string{"up", "2", "--shards", "17"}, 0, true},
		{[]string{"up", "2", "--shards", "+2"}, 0, true},
		{[]string{"kill-db", "2", "--shards", "2"}, 0, true},
	} {
		o, err := parseArgs(tt.args)
		var ue usageError
		if tt.bad != errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error: %t", tt.args, err, tt.bad)
		}
		if !tt.bad && o.shards != tt.shards {
			t.Errorf("%q: %d shards, want %d", tt.args, o.shards, tt.shards)
		}
	}
}
