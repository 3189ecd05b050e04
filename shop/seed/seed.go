// Package seed generates a deterministic, realistic-looking catalog so that a
// fresh service has a menu to serve and load experiments are repeatable.
package seed

import (
	"fmt"

	"github.com/perfscale/perfscale/shop"
)

// DefaultItems is the size of the catalog seeded on first start.
const DefaultItems = 200

// MaxItems bounds --seed-items: enough for load experiments, small enough
// to seed in seconds.
const MaxItems = 1_000_000

// Categories are the menu's sections; items are spread evenly across them.
var Categories = []string{
	"breakfast", "salads", "soups", "sandwiches", "burgers", "pizza",
	"pasta", "bowls", "sides", "desserts", "cold drinks", "hot drinks",
}

var (
	adjectives = []string{"Classic", "Spicy", "Smoky", "Garden", "Golden", "Rustic", "Crispy", "Herbed", "Roasted", "Zesty", "Double", "Little"}
	nouns      = map[string][]string{
		"breakfast":   {"Pancakes", "Omelette", "Granola", "Waffle", "Porridge"},
		"salads":      {"Caesar", "Greek Salad", "Cobb", "Niçoise", "Slaw"},
		"soups":       {"Tomato Soup", "Minestrone", "Ramen", "Chowder", "Pho"},
		"sandwiches":  {"Club", "Reuben", "BLT", "Panini", "Wrap"},
		"burgers":     {"Cheeseburger", "Veggie Burger", "Chicken Burger", "Smash Burger", "Slider"},
		"pizza":       {"Margherita", "Pepperoni", "Quattro Formaggi", "Funghi", "Diavola"},
		"pasta":       {"Carbonara", "Pesto Linguine", "Lasagne", "Arrabbiata", "Ravioli"},
		"bowls":       {"Poke Bowl", "Burrito Bowl", "Buddha Bowl", "Teriyaki Bowl", "Falafel Bowl"},
		"sides":       {"Fries", "Onion Rings", "Garlic Bread", "Side Salad", "Wedges"},
		"desserts":    {"Cheesecake", "Brownie", "Tiramisu", "Sundae", "Apple Pie"},
		"cold drinks": {"Lemonade", "Iced Tea", "Cola", "Smoothie", "Sparkling Water"},
		"hot drinks":  {"Espresso", "Latte", "Cappuccino", "Green Tea", "Hot Chocolate"},
	}
)

// Item returns the i-th seeded item (i from 0); the same i always gives the
// same item. Its ID is i+1.
func Item(i int) shop.Item {
	cat := Categories[i%len(Categories)]
	k := i / len(Categories)
	ns := nouns[cat]
	noun := ns[k%len(ns)]
	adj := adjectives[(k/len(ns))%len(adjectives)]
	name := adj + " " + noun
	if round := k / (len(ns) * len(adjectives)); round > 0 {
		name = fmt.Sprintf("%s No. %d", name, round+1)
	}
	// A price between 2.50 and 17.45 that looks hand-set (ends in 5 or 0).
	price := int64(250 + (i*7919)%300*5)
	return shop.Item{
		ID:          int64(i + 1),
		Name:        name,
		Description: fmt.Sprintf("%s from our %s menu.", name, cat),
		PriceCents:  price,
		Category:    cat,
		Available:   true,
		Stock:       int64(1000 + (i*104729)%9000),
	}
}

// Items returns the first n seeded items.
func Items(n int) []shop.Item {
	items := make([]shop.Item, n)
	for i := range items {
		items[i] = Item(i)
	}
	return items
}
