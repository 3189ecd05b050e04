package clustertest

import "testing"

// scripts/bench-profile.sh: bad usage is one line naming the mistake and
// one of usage, exit 2, before anything is built or started; --help prints
// the script's head. (Its profiled run needs a quiet machine to mean
// anything; the lead runs it, docs/performance.md has the command.)
func TestBenchProfileRefusesBadUsage(t *testing.T) {
	checkScriptUsage(t, "scripts/bench-profile.sh", "usage: scripts/bench-profile.sh", "Usage: scripts/bench-profile.sh [REPLICAS]", []usageCase{
		{[]string{"--bogus"}, "", "unknown option --bogus"},
		{[]string{"2", "3"}, "", "one argument at most"},
		{[]string{"two"}, "", "REPLICAS must be a whole number above 0, got 'two'"},
		{nil, "DUR=20s", "DUR must be a whole number above 0, got '20s'"},
		{nil, "USERS=0", "USERS must be a whole number above 0, got '0'"},
		{nil, "PERF=yes", "PERF must be 0 or 1, got 'yes'"},
	})
}
