package postgres

import (
	"errors"
	"fmt"
	"testing"
)

// A connection error is one line that says each cause once: pgx repeats
// a failed lookup (once per attempt, and once more inside "hostname
// resolving error: ..."), and `shop migrate` printed it twice.
func TestOneLineSaysEachCauseOnce(t *testing.T) {
	lookup := errors.New("lookup nosuchhost.invalid on 10.255.255.53:53: no such host")
	refused := errors.New("127.0.0.1:1 (127.0.0.1): dial error: dial tcp 127.0.0.1:1: connect: connection refused")
	// pgconn.ConnectError's text: its summary, then each attempt indented.
	connect := func(cause error) error {
		return fmt.Errorf("failed to connect to `user=root database=x`:\n\t%s", cause.Error())
	}
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"unresolvable host", connect(fmt.Errorf("hostname resolving error: %w", errors.Join(lookup, lookup))),
			"failed to connect to `user=root database=x`: hostname resolving error: lookup nosuchhost.invalid on 10.255.255.53:53: no such host"},
		{"refused twice", connect(errors.Join(refused, refused)),
			"failed to connect to `user=root database=x`: 127.0.0.1:1 (127.0.0.1): dial error: dial tcp 127.0.0.1:1: connect: connection refused"},
		{"two different causes", errors.Join(errors.New("first"), errors.New("second")), "first; second"},
		{"one line", errors.New("cannot parse `x`: failed to parse as keyword/value"), "cannot parse `x`: failed to parse as keyword/value"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := oneLine(tt.err); got != tt.want {
				t.Errorf("oneLine:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
