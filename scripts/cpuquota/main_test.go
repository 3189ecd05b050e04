package main

import (
	"strings"
	"testing"
)

func TestArgumentsAreCheckedBeforeAnyCgroupIsMade(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "0.5", "x"}, "usage"},
		{[]string{"run", "0", "perfscale-x/shop", "true"}, `CORES "0"`},
		{[]string{"run", "-1", "perfscale-x/shop", "true"}, `CORES "-1"`},
		{[]string{"run", "half", "perfscale-x/shop", "true"}, `CORES "half"`},
		{[]string{"run", "NaN", "perfscale-x/shop", "true"}, `CORES "NaN"`},
		{[]string{"run", "0.5", "/sys/fs/cgroup/cpu/x", "true"}, "want a relative path"},
		{[]string{"run", "0.5", "../x", "true"}, "want a relative path"},
		{[]string{"run", "0.5", "a/../..", "true"}, "want a relative path"},
		{[]string{"run", "0.5", ".", "true"}, "want a relative path"},
		{[]string{"run", "--period", "0.5", "perfscale-x/shop", "true"}, `--period "0.5"`},
		{[]string{"run", "--period", "500us", "0.5", "perfscale-x/shop", "true"}, `--period "500us"`},
		{[]string{"run", "--period", "2s", "0.5", "perfscale-x/shop", "true"}, `--period "2s"`},
		{[]string{"run", "--period", "10ms", "0.5", "x"}, "usage"},
		{[]string{"run", "--period"}, "usage"},
		{[]string{"remove", "../x"}, "want a relative path"},
		{[]string{"remove"}, "usage"},
		{[]string{"start", "x"}, "usage"},
	}
	for _, tt := range tests {
		err := run(tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("cpuquota %q: error %v, want one saying %q", tt.args, err, tt.want)
		}
	}
}
