package report

import (
	"bytes"
	"strings"
	"testing"
)

func TestSpliceDocReplacesOnlyBetweenTheMarkers(t *testing.T) {
	doc := "# Title\n\nhand text\n\n" + DocBegin + "\n\nold run\n\n" + DocEnd + "\n\nmore hand text\n"
	tests := []struct {
		name, doc, want, err string
	}{
		{"replaced", doc, "# Title\n\nhand text\n\n" + DocBegin + "\n\nnew run\n\n" + DocEnd + "\n\nmore hand text\n", ""},
		{"empty between", DocBegin + DocEnd, DocBegin + "\n\nnew run\n\n" + DocEnd, ""},
		{"no markers", "# Title\n", "", "has no line"},
		{"no end", DocBegin + "\n", "", "has no line \"" + DocEnd},
		{"two begins", DocBegin + DocBegin + DocEnd, "", "has 2 lines"},
		{"reversed", DocEnd + "\n" + DocBegin, "", "end marker before its begin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SpliceDoc([]byte(tt.doc), []byte("\nnew run\n"))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				if CheckDoc([]byte(tt.doc)) == nil {
					t.Fatal("CheckDoc takes what SpliceDoc refuses")
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v\nwant %q", got, err, tt.want)
			}
			// A second run replaces the first: the document does not grow.
			again, err := SpliceDoc(got, []byte("new run"))
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("spliced twice: %q, %v", again, err)
			}
		})
	}
}

func TestExperimentsDocSaysWhereTheRunCameFrom(t *testing.T) {
	p := Provenance{Command: "loadlab experiments --only sync-mail", Commit: "264770c1d2e3", ShopCommit: "264770c1d2e3",
		Machine: "AMD EPYC 7B13, 2 CPUs, 23 GiB", Cores: 2}
	const flag = "**Flagged: the load average was above the machine's 2 cores"
	tests := []struct {
		name        string
		load        float64
		cores       int
		wantFlagged bool
	}{
		{"quiet", 1.5, 2, false},
		{"busy", 3.5, 2, true},
		{"cores unknown", 30, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sampleExperiments()
			r.LoadBefore = tt.load
			p := p
			p.Cores = tt.cores
			var b bytes.Buffer
			if err := ExperimentsDoc(&b, r, p); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			for _, want := range []string{
				"One run of `loadlab experiments --only sync-mail` on 2026-12-06 from 12:00:00 to 12:01:30 UTC (1m30s)",
				"at loadlab commit 264770c1d2e3 (the shop: 264770c1d2e3)", "on AMD EPYC 7B13, 2 CPUs, 23 GiB",
				"at a load average of ", " at the start and unknown at the end",
				"| experiment | claim | setting |", "| sync-mail |",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("lacks %q:\n%s", want, out)
				}
			}
			if got := strings.Contains(out, flag); got != tt.wantFlagged {
				t.Errorf("flagged %v, want %v:\n%s", got, tt.wantFlagged, out)
			}
		})
	}
}
