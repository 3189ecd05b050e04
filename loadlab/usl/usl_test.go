package usl

import (
	"math"
	"os"
	"strings"
	"testing"
)

func within(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want)
}

// The SPEC SDM91 benchmark as fitted by the R package usl (Gunther's book
// and the package's vignette): σ = 0.0277285, κ = 0.0001044, λ = 89.995.
func TestFitMatchesRPackageOnSPECSDM91(t *testing.T) {
	f, err := os.Open("testdata/specsdm91.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pts, err := ReadCSV(f)
	if err != nil {
		t.Fatal(err)
	}
	fit, err := FitPoints(pts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("σ=%.7f κ=%.7f λ=%.3f N*=%.1f R²=%.4f", fit.Sigma, fit.Kappa, fit.Lambda, fit.PeakConcurrency, fit.R2)
	if !within(fit.Sigma, 0.0277285, 0.01) || !within(fit.Kappa, 0.0001044, 0.03) || !within(fit.Lambda, 89.995, 0.01) {
		t.Fatalf("fit σ=%.7f κ=%.7f λ=%.3f; R usl: σ=0.0277285 κ=0.0001044 λ=89.995", fit.Sigma, fit.Kappa, fit.Lambda)
	}
	if math.Abs(fit.PeakConcurrency-97) > 3 {
		t.Fatalf("peak concurrency %.1f, want about 97", fit.PeakConcurrency)
	}
	if fit.R2 < 0.98 {
		t.Fatalf("R² = %.4f", fit.R2)
	}
}

// Points generated from σ = κ = 0.02, λ = 1 must give those back.
func TestFitRecoversExactSyntheticParameters(t *testing.T) {
	pts := []Point{{1, 1}, {2, 1.8868}, {4, 3.0769}, {6, 3.5294}, {8, 3.5398}, {10, 3.3557}}
	fit, err := FitPoints(pts)
	if err != nil {
		t.Fatal(err)
	}
	if !within(fit.Sigma, 0.02, 0.01) || !within(fit.Kappa, 0.02, 0.01) || !within(fit.Lambda, 1, 0.001) {
		t.Fatalf("fit σ=%.5f κ=%.5f λ=%.5f, want 0.02, 0.02, 1", fit.Sigma, fit.Kappa, fit.Lambda)
	}
	if want := math.Sqrt(0.98 / 0.02); !within(fit.PeakConcurrency, want, 0.01) {
		t.Fatalf("N* = %.3f, want %.3f", fit.PeakConcurrency, want)
	}
	if fit.R2 < 0.9999 {
		t.Fatalf("R² = %.6f for exact data", fit.R2)
	}
}

func TestFitShapes(t *testing.T) {
	gen := func(sigma, kappa, lambda float64) []Point {
		var pts []Point
		for _, n := range []float64{1, 2, 4, 8, 16, 32, 64} {
			f := Fit{Sigma: sigma, Kappa: kappa, Lambda: lambda}
			pts = append(pts, Point{n, f.Throughput(n)})
		}
		return pts
	}
	tests := []struct {
		name                 string
		sigma, kappa, lambda float64
	}{
		{"linear", 0, 0, 100},
		{"contention only", 0.3, 0, 500},
		{"retrograde", 0.05, 0.01, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fit, err := FitPoints(gen(tt.sigma, tt.kappa, tt.lambda))
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(fit.Sigma-tt.sigma) > 0.005 || math.Abs(fit.Kappa-tt.kappa) > 0.0005 || !within(fit.Lambda, tt.lambda, 0.01) {
				t.Fatalf("fit %+v, want σ=%v κ=%v λ=%v", fit, tt.sigma, tt.kappa, tt.lambda)
			}
			if tt.kappa == 0 && fit.Kappa < 1e-6 && !math.IsInf(fit.PeakConcurrency, 1) && fit.PeakConcurrency < 1000 {
				t.Fatalf("no coherency cost but a peak at %v", fit.PeakConcurrency)
			}
		})
	}
}

func TestEfficiency(t *testing.T) {
	pts := []Point{{1, 100}, {2, 150}, {4, 200}}
	got := Efficiency(pts, Fit{})
	want := []float64{1, 0.75, 0.5}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Fatalf("efficiency = %v, want %v", got, want)
		}
	}
}

func TestReadCSVRejectsBadInput(t *testing.T) {
	tests := []struct {
		name, csv, want string
	}{
		{"no header", "1,10\n2,20\n3,30\n", "line 1: the first line must be a header"},
		{"not a number", "N,X\n1,10\n2,abc\n3,30\n", "line 3: X \"abc\" is not a number"},
		{"N not a number", "N,X\n1,10\nx,20\n3,30\n", "line 3: N \"x\" is not a number"},
		{"N below one", "N,X\n1,10\n0,20\n3,30\n", "line 3: N must be at least 1"},
		{"N fractional", "N,X\n1,10\n2.5,20\n3,30\n", `line 3: N must be a whole number (users or replicas), got "2.5"`},
		{"N fractional below two", "N,X\n1.5,10\n2,20\n3,30\n", `line 2: N must be a whole number (users or replicas), got "1.5"`},
		{"duplicate N", "N,X\n1,10\n2,20\n2,25\n", "line 4: N 2 already given on line 3"},
		{"three columns", "N,X\n1,10,5\n2,20\n3,30\n", "line 2: want two columns"},
		{"negative X", "N,X\n1,10\n2,-20\n3,30\n", "line 3: X must not be negative"},
		{"bad quote", "N,X\n1,10\n\"2,20\n3,30\n", "line 3"},
		{"NaN", "N,X\n1,10\n2,NaN\n3,30\n", "line 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadCSV(strings.NewReader(tt.csv))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
	pts, err := ReadCSV(strings.NewReader("users, rps\n4, 30\n1, 10\n2, 18\n"))
	if err != nil || len(pts) != 3 || pts[0].N != 1 {
		t.Fatalf("good CSV: %v, %v (want sorted by N)", pts, err)
	}
}

// Too few points, or JSON where CSV belongs, is wrong with the file as a
// whole: the message names no line, since the last line read (a good
// point) is not where the fault is, and JSON's quotes are not its fault.
func TestReadCSVTooFewPointsNamesNoLine(t *testing.T) {
	tests := []struct {
		name, csv, want string
	}{
		{"empty", "", "the file is empty; want a header line N,X and at least 3 points"},
		{"header only", "N,X\n", "no points after the header; the fit needs at least 3"},
		{"one point", "N,X\n1,10\n", "only 1 point; the fit needs at least 3"},
		{"two points", "N,X\n1,10\n2,20\n", "only 2 points; the fit needs at least 3"},
		{"two points and a comment", "N,X\n1,10\n2,20\n# done\n", "only 2 points; the fit needs at least 3"},
		{"a JSON report", `{"sigma": 0.02, "kappa": 0}`, "the file looks like JSON; want CSV: a header line N,X, then one N,X point a line"},
		{"a JSON list", "\n  [1, 2]\n", "the file looks like JSON; want CSV: a header line N,X, then one N,X point a line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadCSV(strings.NewReader(tt.csv))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestFitRejectsBadPoints(t *testing.T) {
	for _, pts := range [][]Point{
		{{1, 1}, {2, 2}},
		{{1, 1}, {1, 2}, {3, 3}},
		{{0, 1}, {2, 2}, {3, 3}},
		{{1, 0}, {2, 0}, {3, 0}},
	} {
		if _, err := FitPoints(pts); err == nil {
			t.Errorf("FitPoints(%v) accepted", pts)
		}
	}
}

// κ about zero is no peak, and σ ≥ 1 is a peak at one user, in the fit and
// in words (the summary once said "peak at N* = 693387133.0" for the
// first, and "no peak (κ = 0)" for Python's http.server, σ = 1.311).
func TestPeakAtTheEdges(t *testing.T) {
	model := func(sigma, kappa, lambda float64) []Point {
		f := Fit{Sigma: sigma, Kappa: kappa, Lambda: lambda}
		var pts []Point
		for _, n := range []float64{1, 2, 4, 8, 16, 32} {
			pts = append(pts, Point{N: n, X: f.Throughput(n)})
		}
		return pts
	}
	tests := []struct {
		name         string
		sigma, kappa float64
		peak         float64
		text         string
	}{
		{"contention only", 0.2, 0, math.Inf(1), "no peak (κ ≈ 0"},
		{"coherency too small to matter", 0.2, 1e-12, math.Inf(1), "no peak (κ ≈ 0"},
		{"serial beyond one user", 1.311, 0.01864, 1, "peak at one user"},
		{"a real peak", 0.02, 0.002, math.Sqrt(0.98 / 0.002), "peak at N* = 22.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fit, err := FitPoints(model(tt.sigma, tt.kappa, 250))
			if err != nil {
				t.Fatal(err)
			}
			if !(math.IsInf(tt.peak, 1) && math.IsInf(fit.PeakConcurrency, 1)) && !within(fit.PeakConcurrency, tt.peak, 0.02) {
				t.Fatalf("N* = %v, want %v (σ=%.4g κ=%.4g)", fit.PeakConcurrency, tt.peak, fit.Sigma, fit.Kappa)
			}
			if got := fit.PeakText(); !strings.Contains(got, tt.text) {
				t.Fatalf("PeakText() = %q, want %q", got, tt.text)
			}
		})
	}
}
