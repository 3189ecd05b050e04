package antipattern

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "", want: ""},
		{in: " , ", want: ""},
		{in: "no-cache", want: "no-cache"},
		// The documented order, whatever the given one; a repeat counts once.
		{in: "sync-mail, missing-index,sync-mail", want: "missing-index,sync-mail"},
		{in: "no-cache,nope", err: `unknown anti-pattern "nope"; valid: ` + strings.Join(Names(), ", ")},
		{in: "No-Cache", err: `unknown anti-pattern "No-Cache"`},
		{in: "no-cache,local-cache", err: "exclude each other"},
	} {
		s, err := Parse(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Parse(%q) = %v, want one line with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || s.String() != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.in, s.String(), err, tc.want)
		}
	}
	if len(Names()) != 10 {
		t.Errorf("%d switches, want the ten of issue 21: %v", len(Names()), Names())
	}
	for _, n := range Names() {
		if Describe(Name(n)) == "" {
			t.Errorf("%s has no description", n)
		}
	}
}

func TestRegisterExportsOneGaugePerSwitch(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := Register(reg, Of(NPlusOne, ExtraHops)); err != nil {
		t.Fatal(err)
	}
	want := `# HELP shop_antipattern 1 for each anti-pattern switch this process runs with (shop --antipattern).
# TYPE shop_antipattern gauge
shop_antipattern{name="extra-hops"} 1
shop_antipattern{name="n-plus-one"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "shop_antipattern"); err != nil {
		t.Error(err)
	}
}
