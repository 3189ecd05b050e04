// Command gen writes shop/instrument's store_gen.go: go generate ./shop/instrument.
package main

import (
	"fmt"
	"os"

	"github.com/perfscale/perfscale/shop/instrument/internal/storegen"
)

func main() {
	src, err := storegen.Generate()
	if err == nil {
		err = os.WriteFile("store_gen.go", src, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "storegen:", err)
		os.Exit(1)
	}
}
