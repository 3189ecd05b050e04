package seed

import "testing"

func TestItemsAreDeterministicAndSpreadOverCategories(t *testing.T) {
	a, b := Items(DefaultItems), Items(DefaultItems)
	perCategory := map[string]int{}
	names := map[string]bool{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("item %d differs between two calls: %+v vs %+v", i, a[i], b[i])
		}
		if a[i].ID != int64(i+1) {
			t.Fatalf("item %d has id %d, want %d", i, a[i].ID, i+1)
		}
		if a[i].PriceCents < 250 || a[i].PriceCents > 2000 || a[i].Stock <= 0 || !a[i].Available {
			t.Fatalf("item %d is not sellable: %+v", i, a[i])
		}
		if names[a[i].Name] {
			t.Fatalf("item %d repeats the name %q", i, a[i].Name)
		}
		names[a[i].Name] = true
		perCategory[a[i].Category]++
	}
	if len(perCategory) != len(Categories) {
		t.Fatalf("items use %d categories, want %d", len(perCategory), len(Categories))
	}
	for c, n := range perCategory {
		if n < DefaultItems/len(Categories) {
			t.Errorf("category %q has only %d items", c, n)
		}
	}
}

func TestNamesStayUniqueAtScale(t *testing.T) {
	seen := map[string]bool{}
	for i := range 5000 {
		n := Item(i).Name
		if seen[n] {
			t.Fatalf("item %d repeats the name %q", i, n)
		}
		seen[n] = true
	}
}
