// Package archdoc reads the package diagram of docs/architecture.md and
// compares it with the module's real imports, so the map a newcomer reads
// first cannot drift from the code: every package of the module is drawn,
// every drawn arrow is a direct import, and every direct import between the
// module's packages is drawn. Its test runs the comparison on the
// repository.
//
// The diagram is the text between the lines BeginMarker and EndMarker
// (HTML comments, invisible when the Markdown is rendered; the diagram
// itself sits in a code fence between them). Each line draws one package
// and the packages it imports, by their paths inside the module:
//
//	shop/backend -> shop, shop/jobs    # store and queue as one pair
//	             -> shop/sqlite        # a line starting with -> continues the package above
//	shop                               # a package that imports none of the module's
//
// Text from # to the end of a line is a comment; blank lines, comment
// lines and code fence lines are ignored.
package archdoc

import (
	"bufio"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// The lines that open and close the diagram in the Markdown document.
const (
	BeginMarker = "<!-- archdoc:begin -->"
	EndMarker   = "<!-- archdoc:end -->"
)

// Diagram is the drawn graph: each drawn package with the packages its
// arrows point to, by paths inside the module.
type Diagram map[string][]string

// Package is what the comparison needs of one package of the module.
type Package struct {
	Path    string   // inside the module, e.g. "shop/httpapi"
	Imports []string // the module's packages it imports directly, same form
}

// Parse reads the one diagram block of a Markdown document. Errors name
// the document's line.
func Parse(markdown string) (Diagram, error) {
	d := Diagram{}
	inBlock, seenBlock := false, false
	current := ""
	sc := bufio.NewScanner(strings.NewReader(markdown))
	for n := 1; sc.Scan(); n++ {
		raw := sc.Text()
		switch strings.TrimSpace(raw) {
		case BeginMarker:
			if inBlock || seenBlock {
				return nil, fmt.Errorf("line %d: a second %s; the document must hold exactly one diagram", n, BeginMarker)
			}
			inBlock, seenBlock = true, true
			continue
		case EndMarker:
			if !inBlock {
				return nil, fmt.Errorf("line %d: %s without %s before it", n, EndMarker, BeginMarker)
			}
			inBlock = false
			continue
		}
		if !inBlock {
			continue
		}
		var err error
		if current, err = parseLine(d, raw, current); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the document: %w", err)
	}
	switch {
	case !seenBlock:
		return nil, fmt.Errorf("no diagram: no line %s", BeginMarker)
	case inBlock:
		return nil, fmt.Errorf("the diagram has no closing line %s", EndMarker)
	case len(d) == 0:
		return nil, fmt.Errorf("the diagram between %s and %s draws no package", BeginMarker, EndMarker)
	}
	return d, nil
}

// parseLine adds one line of the block to d and returns the package the
// next continuation line belongs to.
func parseLine(d Diagram, raw, current string) (string, error) {
	line, _, _ := strings.Cut(raw, "#")
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "```") {
		return current, nil
	}
	from, targets, hasArrow := strings.Cut(line, "->")
	from = strings.TrimSpace(from)
	if from == "" {
		if current == "" {
			return "", fmt.Errorf("%q continues no package: a line starting with -> must follow a package's line", line)
		}
		from = current
	} else {
		if strings.ContainsAny(from, " \t") {
			return "", fmt.Errorf("%q: expected a package path, then optionally -> and the packages it imports, comma-separated", line)
		}
		if _, ok := d[from]; ok {
			return "", fmt.Errorf("%s is drawn twice: draw each package once (continue its arrows on lines starting with ->)", from)
		}
		d[from] = nil
	}
	if !hasArrow {
		return from, nil
	}
	for t := range strings.SplitSeq(targets, ",") {
		t = strings.TrimSpace(t)
		if t == "" || strings.ContainsAny(t, " \t") || strings.Contains(t, "->") {
			return "", fmt.Errorf("%q: the arrows of %s must point to package paths separated by commas", line, from)
		}
		d[from] = append(d[from], t)
	}
	return from, nil
}

// Check compares the diagram with the module's packages and returns what
// differs, one sentence each, in a stable order; none when they agree.
func Check(d Diagram, pkgs []Package) []string {
	real := map[string][]string{}
	for _, p := range pkgs {
		real[p.Path] = p.Imports
	}
	var problems []string
	for _, p := range pkgs {
		if _, ok := d[p.Path]; !ok {
			problems = append(problems, fmt.Sprintf("package %s is not drawn: add a line for it (with its arrows) to the diagram", p.Path))
			continue
		}
		for _, imp := range p.Imports {
			if !slices.Contains(d[p.Path], imp) {
				problems = append(problems, fmt.Sprintf("arrow %s -> %s is missing: %s imports %s", p.Path, imp, p.Path, imp))
			}
		}
	}
	for from, targets := range d {
		imports, ok := real[from]
		if !ok {
			problems = append(problems, fmt.Sprintf("package %s is drawn but is no package of the module (renamed or removed?)", from))
			continue
		}
		for _, to := range targets {
			if !slices.Contains(imports, to) {
				problems = append(problems, fmt.Sprintf("arrow %s -> %s is drawn but %s does not import %s", from, to, from, to))
			}
		}
	}
	sort.Strings(problems)
	return slices.Compact(problems)
}
