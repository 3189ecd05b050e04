package instrument_test

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/instrument"
	"github.com/perfscale/perfscale/shop/sqlite"
)

// Every method of shop.Store (Close aside) called through the wrapper is
// observed under an operation name of its own, so a method added to the
// store cannot go untimed or be mistaken for another in the metrics.
func TestEveryStoreMethodIsTimedUnderItsOwnName(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	store := instrument.NewMetrics(reg).Wrap(sqlite.NewStore(db, nil))
	defer store.Close()

	storeType := reflect.TypeFor[shop.Store]()
	ctxType := reflect.TypeFor[context.Context]()
	v := reflect.ValueOf(store)
	called := 0
	for i := range storeType.NumMethod() {
		m := storeType.Method(i)
		if m.Name == "Close" {
			continue
		}
		args := make([]reflect.Value, m.Type.NumIn())
		for j := range args {
			in := m.Type.In(j)
			switch {
			case in == ctxType:
				args[j] = reflect.ValueOf(ctx)
			case in.Kind() == reflect.Func: // a callback that does nothing
				args[j] = reflect.MakeFunc(in, func([]reflect.Value) []reflect.Value {
					out := make([]reflect.Value, in.NumOut())
					for k := range out {
						out[k] = reflect.Zero(in.Out(k))
					}
					return out
				})
			default:
				args[j] = reflect.Zero(in)
			}
		}
		// Zero arguments make most calls fail; a failed call is observed too.
		v.MethodByName(m.Name).Call(args)
		called++
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]uint64{}
	for _, f := range families {
		if f.GetName() != "shop_store_call_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" {
					ops[l.GetValue()] += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	if len(ops) != called {
		t.Fatalf("%d store methods called, %d operations observed: %v", called, len(ops), ops)
	}
	for op, n := range ops {
		if n != 1 {
			t.Errorf("operation %q observed %d times for one call", op, n)
		}
	}
}

func TestOutcomeTellsRefusalsFromFailures(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{shop.Errorf(shop.ENOTFOUND, "no"), "refused"},
		{&shop.OutOfStockError{}, "refused"},
		{context.DeadlineExceeded, "error"},
	}
	for _, tt := range tests {
		if got := instrument.Outcome(tt.err); got != tt.want {
			t.Errorf("Outcome(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
