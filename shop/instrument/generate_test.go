package instrument_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/perfscale/perfscale/shop/instrument/internal/storegen"
)

// The generated wrapper (store_gen.go) is the one storegen makes from
// shop.Store as it is now: a store method added, removed or changed fails
// here until `go generate ./shop/instrument` is run.
func TestGeneratedWrapperIsCurrent(t *testing.T) {
	src, err := storegen.Generate()
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("store_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, src) {
		t.Fatal("store_gen.go is not what shop.Store makes now: run go generate ./shop/instrument")
	}
}

// The operation names are the metric's label values that dashboards and
// docs use: the generator keeps them.
func TestOperationNamesAreStable(t *testing.T) {
	for method, want := range map[string]string{
		"Menu": "menu", "CatalogVersion": "catalog_version", "SessionByTokenHash": "session",
		"InCheckout": "checkout", "OrderByID": "order_by_id", "MarkOrderEventsPublished": "mark_order_events_published",
	} {
		if got := storegen.Operation(method); got != want {
			t.Errorf("%s is timed as %q, want %q", method, got, want)
		}
	}
}
