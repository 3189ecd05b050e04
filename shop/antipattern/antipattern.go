// Package antipattern holds the service's anti-pattern switches (shop
// --antipattern): faithful, minimal versions of the mistakes the
// performance-versus-scalability articles describe, each off by default,
// so the load lab can measure what each one does. Each switch is a
// decorator or an alternative implementation that shop/app composes in
// place of the good one; the two that must change a store's SQL
// (missing-index, n-plus-one) live in one file of shop/sqlstore
// (antipatterns.go). See docs/antipatterns.md.
package antipattern

import (
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Name names a switch, as --antipattern takes it.
type Name string

// The switches.
const (
	MissingIndex  Name = "missing-index"
	NPlusOne      Name = "n-plus-one"
	GlobalLock    Name = "global-lock"
	LocalSessions Name = "local-sessions"
	LocalCache    Name = "local-cache"
	SyncMail      Name = "sync-mail"
	ExtraHops     Name = "extra-hops"
	NoPool        Name = "no-pool"
	NoCompression Name = "no-compression"
	NoCache       Name = "no-cache"
)

// switches is every switch with what it does, in the order --help and the
// docs list them.
var switches = []struct {
	name Name
	what string
}{
	{MissingIndex, "the menu and item listing queries cannot use their indexes"},
	{NPlusOne, "the menu, cart and order reads fetch one row per query"},
	{GlobalLock, "every request holds one read/write lock shared by all replicas, writes alone, reads together (SQLite: a process-wide read/write lock)"},
	{LocalSessions, "sessions and carts live in this replica's memory only"},
	{LocalCache, "each replica caches the catalog on its own for a fixed time, with no shared layer and no invalidation"},
	{SyncMail, "the confirmation mail is sent inside the checkout request"},
	{ExtraHops, "a checkout passes through --hops internal HTTP hops"},
	{NoPool, "a new database connection for every statement or transaction"},
	{NoCompression, "responses are never compressed"},
	{NoCache, "no cache at all: every read, the menu's included, goes to the database"},
}

// Names is every switch's name, in order.
func Names() []string {
	out := make([]string, len(switches))
	for i, s := range switches {
		out[i] = string(s.name)
	}
	return out
}

// Describe says what a switch does.
func Describe(n Name) string {
	for _, s := range switches {
		if s.name == n {
			return s.what
		}
	}
	return ""
}

// Set is the switches a process runs with; the zero Set runs none.
type Set struct{ on []Name }

// Parse reads a comma-separated list of switch names; an empty list is no
// switch. An unknown name is refused with the valid ones.
func Parse(list string) (Set, error) {
	var s Set
	for _, part := range strings.Split(list, ",") {
		n := Name(strings.TrimSpace(part))
		if n == "" {
			continue
		}
		if Describe(n) == "" {
			return Set{}, fmt.Errorf("unknown anti-pattern %q; valid: %s", string(n), strings.Join(Names(), ", "))
		}
		if !s.Has(n) {
			s.on = append(s.on, n)
		}
	}
	if s.Has(NoCache) && s.Has(LocalCache) {
		return Set{}, fmt.Errorf("anti-patterns %s and %s exclude each other: one caches the catalog in each replica, the other caches nothing", NoCache, LocalCache)
	}
	// In the documented order, whatever order they were given in.
	slices.SortFunc(s.on, func(a, b Name) int { return index(a) - index(b) })
	return s, nil
}

func index(n Name) int {
	return slices.IndexFunc(switches, func(s struct {
		name Name
		what string
	}) bool {
		return s.name == n
	})
}

// Of returns the Set of the given switches (for tests and code).
func Of(names ...Name) Set {
	var parts []string
	for _, n := range names {
		parts = append(parts, string(n))
	}
	s, err := Parse(strings.Join(parts, ","))
	if err != nil {
		panic(err)
	}
	return s
}

// Has reports whether switch n is on.
func (s Set) Has(n Name) bool { return slices.Contains(s.on, n) }

// Empty reports whether no switch is on.
func (s Set) Empty() bool { return len(s.on) == 0 }

// Names lists the switches that are on, in the documented order.
func (s Set) Names() []string {
	out := make([]string, len(s.on))
	for i, n := range s.on {
		out[i] = string(n)
	}
	return out
}

// String is the list as --antipattern takes it.
func (s Set) String() string { return strings.Join(s.Names(), ",") }

// Register exports shop_antipattern{name} = 1 for each switch that is on,
// so a dashboard or the load lab can tell a degraded replica from a good
// one.
func Register(reg prometheus.Registerer, s Set) error {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shop_antipattern",
		Help: "1 for each anti-pattern switch this process runs with (shop --antipattern).",
	}, []string{"name"})
	for _, n := range s.on {
		g.WithLabelValues(string(n)).Set(1)
	}
	return reg.Register(g)
}
