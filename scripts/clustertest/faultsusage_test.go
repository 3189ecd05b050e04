package clustertest

import "testing"

// scripts/faults.sh: bad usage is one line and exit 2 before anything
// runs; --help prints the script's head and exits 0 (it said "unknown
// argument --help", exit 2).
func TestFaultsScriptUsage(t *testing.T) {
	checkScriptUsage(t, "scripts/faults.sh", "", "--shards S runs it", []usageCase{
		{[]string{"--bogus"}, "", "faults: unknown argument --bogus; usage: scripts/faults.sh [--shards S]"},
		{[]string{"--shards", "two"}, "", "faults: --shards wants a number of shards, 1 or more"},
		{[]string{"--shards"}, "", "faults: --shards wants a number of shards, 1 or more"},
	})
}
