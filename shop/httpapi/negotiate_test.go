package httpapi

import "testing"

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		accept string
		want   coding
	}{
		{"", codingIdentity},
		{"gzip", codingGzip},
		{"br", codingBrotli},
		{"gzip, deflate, br, zstd", codingBrotli},
		{"gzip, identity", codingGzip},
		{"br;q=0.1, gzip;q=0.9", codingGzip},
		{"br;q=0, gzip;q=0", codingIdentity},
		{"*", codingBrotli},
		{"*;q=0.5, br;q=0", codingGzip},
		{"identity;q=0, *;q=0", codingIdentity}, // nothing acceptable: identity, not a 406
		{"deflate", codingIdentity},
		{"GZIP;Q=1", codingGzip},
		{"br;q=nonsense", codingBrotli},
	} {
		if got := negotiate(tc.accept); got != tc.want {
			t.Errorf("negotiate(%q) = %s, want %s", tc.accept, codingNames[got], codingNames[tc.want])
		}
	}
}
