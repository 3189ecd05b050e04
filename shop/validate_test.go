package shop_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/perfscale/perfscale/shop"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, pos := range []int64{0, 1, 42, 1 << 62} {
		got, err := shop.DecodeCursor(shop.EncodeCursor(pos))
		if err != nil || got != pos {
			t.Errorf("round trip of %d: got %d, %v", pos, got, err)
		}
	}
}

func TestDecodeCursorRejects(t *testing.T) {
	for _, c := range []string{"x", "!!!!", "djE6MA", "djE6LTE", "djE6MDE", "djI6MQ", "YWJj"} {
		if _, err := shop.DecodeCursor(c); shop.ErrorCode(err) != shop.EINVALID {
			t.Errorf("DecodeCursor(%q) = %v, want invalid", c, err)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	for _, s := range []string{"", "djE6MQ", "djE6MA", "not base64", shop.EncodeCursor(99)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, c string) {
		pos, err := shop.DecodeCursor(c)
		if err != nil {
			if shop.ErrorCode(err) != shop.EINVALID {
				t.Fatalf("error of wrong kind: %v", err)
			}
			return
		}
		if pos < 0 {
			t.Fatalf("negative position %d from %q", pos, c)
		}
		if shop.EncodeCursor(pos) != c {
			t.Fatalf("cursor %q decodes to %d, which encodes differently", c, pos)
		}
	})
}

func TestParseIDIsCanonicalDecimal(t *testing.T) {
	for _, ok := range []string{"1", "5", "9223372036854775807"} {
		if _, err := shop.ParseID("item", ok); err != nil {
			t.Errorf("ParseID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "0", "+5", "007", "-3", " 5", "5 ", "5.0", "0x5", "1e3", "9223372036854775808", "٣"} {
		if _, err := shop.ParseID("item", bad); shop.ErrorCode(err) != shop.EINVALID {
			t.Errorf("ParseID(%q) = %v, want invalid", bad, err)
		}
	}
	// Each refusal says what is wrong with the text: a plain decimal too
	// large was told it must be plain decimal.
	for raw, want := range map[string]string{
		"9223372036854775808":    `item id must be at most 9223372036854775807, got "9223372036854775808"`,
		"999999999999999999999":  `item id must be at most 9223372036854775807, got "999999999999999999999"`,
		"0999999999999999999999": `item id must be a positive whole number in plain decimal (no sign, no leading zeros), got "0999999999999999999999"`,
		"-999999999999999999999": `item id must be a positive whole number in plain decimal (no sign, no leading zeros), got "-999999999999999999999"`,
		"abc":                    `item id must be a positive whole number in plain decimal (no sign, no leading zeros), got "abc"`,
	} {
		if _, err := shop.ParseID("item", raw); err == nil || shop.ErrorMessage(err) != want {
			t.Errorf("ParseID(%q) = %v, want %s", raw, err, want)
		}
	}
}

func TestCheckoutValidate(t *testing.T) {
	tests := []struct {
		name string
		in   shop.Checkout
		ok   bool
	}{
		{"valid", shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}, true},
		{"trimmed", shop.Checkout{CustomerName: "  Ada ", Email: " ada@example.com "}, true},
		{"no name", shop.Checkout{Email: "ada@example.com"}, false},
		{"no email", shop.Checkout{CustomerName: "Ada"}, false},
		{"bad email", shop.Checkout{CustomerName: "Ada", Email: "ada"}, false},
		{"display-name email", shop.Checkout{CustomerName: "Ada", Email: "Ada <ada@example.com>"}, false},
		{"email of 60,012 characters", shop.Checkout{CustomerName: "Ada", Email: strings.Repeat("a", 60000) + "@example.com"}, false},
		{"email of 255 characters", shop.Checkout{CustomerName: "Ada", Email: strings.Repeat("a", 64) + "@" + strings.Repeat("b", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("b", 56) + ".example.com"}, false},
		{"email of 254 characters", shop.Checkout{CustomerName: "Ada", Email: strings.Repeat("a", 64) + "@" + strings.Repeat("b", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("b", 55) + ".example.com"}, true},
		{"email with a label of 64 characters", shop.Checkout{CustomerName: "Ada", Email: "ada@" + strings.Repeat("b", 64) + ".example.com"}, false},
		{"NUL in name", shop.Checkout{CustomerName: "Ada\x00", Email: "ada@example.com"}, false},
		{"CRLF in name", shop.Checkout{CustomerName: "Ada\r\nBcc: x@example.com", Email: "ada@example.com"}, false},
		{"LF in email", shop.Checkout{CustomerName: "Ada", Email: "ada@example.com\nBcc: x@example.com"}, false},
		{"CR in notes", shop.Checkout{CustomerName: "Ada", Email: "ada@example.com", Notes: "a\rb"}, false},
		{"NUL in notes", shop.Checkout{CustomerName: "Ada", Email: "ada@example.com", Notes: "a\x00b"}, false},
		{"lines in notes", shop.Checkout{CustomerName: "Ada", Email: "ada@example.com", Notes: "no onions\n\textra cheese"}, true},
		// Issue 19's hostile probe: each was accepted.
		{"lone surrogate in name (decoded as U+FFFD)", shop.Checkout{CustomerName: "Ada\uFFFD", Email: "ada@example.com"}, false},
		{"right-to-left override in name", shop.Checkout{CustomerName: "Ada\u202Egnp.exe", Email: "ada@example.com"}, false},
		{"zero-width space in name", shop.Checkout{CustomerName: "A\u200Bda", Email: "ada@example.com"}, false},
		{"byte order mark in name", shop.Checkout{CustomerName: "\uFEFFAda", Email: "ada@example.com"}, false},
		{"bidi isolate in notes", shop.Checkout{CustomerName: "Ada", Email: "ada@example.com", Notes: "x\u2067y"}, false},
		{"zero-width non-joiner in a Persian name", shop.Checkout{CustomerName: "می\u200Cخواهم", Email: "ada@example.com"}, true},
		{"email without a dot in the domain", shop.Checkout{CustomerName: "Ada", Email: "a@b"}, false},
		{"email to an address literal", shop.Checkout{CustomerName: "Ada", Email: "a@[127.0.0.1]"}, false},
		{"email domain label starting with a hyphen", shop.Checkout{CustomerName: "Ada", Email: "a@-example.com"}, false},
		{"email domain label ending with a hyphen", shop.Checkout{CustomerName: "Ada", Email: "a@example-.com"}, false},
		{"email with a numeric top-level label", shop.Checkout{CustomerName: "Ada", Email: "a@10.0.0.1"}, false},
		{"email with an empty label", shop.Checkout{CustomerName: "Ada", Email: "a@example..com"}, false},
		{"email local part of 65 characters", shop.Checkout{CustomerName: "Ada", Email: strings.Repeat("a", 65) + "@example.com"}, false},
		{"email local part of 64 characters", shop.Checkout{CustomerName: "Ada", Email: strings.Repeat("a", 64) + "@example.com"}, true},
		{"email with a trailing U+2028", shop.Checkout{CustomerName: "Ada", Email: "ada@example.com\u2028"}, false},
		{"email with a Unicode domain", shop.Checkout{CustomerName: "Ada", Email: "ada@bücher.example"}, false},
		{"email with a punycode domain", shop.Checkout{CustomerName: "Ada", Email: "ada@xn--bcher-kva.example"}, true},
		{"email with a plus tag and subdomain", shop.Checkout{CustomerName: "Ada", Email: "ada+pizza@mail.example.co.uk"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && shop.ErrorCode(err) != shop.EINVALID {
				t.Fatalf("code %q, want invalid", shop.ErrorCode(err))
			}
			// The message says why, never what: it reaches the logs.
			if msg := shop.ErrorMessage(err); err != nil && tt.in.Email != "" && strings.Contains(msg, tt.in.Email) {
				t.Fatalf("message %q repeats the rejected address", msg)
			}
		})
	}
}

func TestFingerprintIgnoresNothingThatMatters(t *testing.T) {
	a := shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}
	b := a
	b.Notes = "no onions"
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("different notes gave the same fingerprint")
	}
	same := shop.Checkout{Email: "ada@example.com", CustomerName: "Ada"}
	if a.Fingerprint() != same.Fingerprint() {
		t.Fatal("equal checkouts gave different fingerprints")
	}
}

func TestErrorCodeAndMessage(t *testing.T) {
	oos := &shop.OutOfStockError{Items: []shop.Shortage{{ItemID: 1, Name: "Tea", Requested: 3, Available: 1}}}
	tests := []struct {
		err  error
		code string
	}{
		{nil, ""},
		{errors.New("disk on fire"), shop.EINTERNAL},
		{shop.Errorf(shop.ENOTFOUND, "no item 3"), shop.ENOTFOUND},
		{fmt.Errorf("place order: %w", shop.ErrCartEmpty), shop.ECONFLICT},
		{fmt.Errorf("place order: %w", oos), shop.ECONFLICT},
	}
	for _, tt := range tests {
		if got := shop.ErrorCode(tt.err); got != tt.code {
			t.Errorf("ErrorCode(%v) = %q, want %q", tt.err, got, tt.code)
		}
	}
	if got := shop.ErrorMessage(errors.New("pq: secret")); got != "internal error" {
		t.Errorf("internal cause leaked: %q", got)
	}
}

func TestStatusMoves(t *testing.T) {
	if !shop.StatusPlaced.CanMoveTo(shop.StatusConfirmed) || !shop.StatusConfirmed.CanMoveTo(shop.StatusReady) {
		t.Fatal("forward moves refused")
	}
	if shop.StatusPlaced.CanMoveTo(shop.StatusReady) || shop.StatusReady.CanMoveTo(shop.StatusPlaced) {
		t.Fatal("skipping or backward move allowed")
	}
}

// FuzzValidateEmail: whatever it is given, ValidateEmail refuses with
// EINVALID or accepts an address that is printable ASCII, net/mail's own
// rendering of itself, with a local part within 64 octets and a dotted
// domain that is not an address literal.
func FuzzValidateEmail(f *testing.F) {
	for _, s := range []string{"ada@example.com", "a@b", "a@[127.0.0.1]", "a@-example.com", "ada@example.com\u2028", `"a b"@example.com`, "ada+x@mail.example.co.uk"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		err := shop.ValidateEmail(addr)
		if err != nil {
			if shop.ErrorCode(err) != shop.EINVALID {
				t.Fatalf("error of wrong kind: %v", err)
			}
			// (A short value can be a word of the message itself.)
			if len(addr) > 24 && strings.Contains(shop.ErrorMessage(err), addr) {
				t.Fatalf("message repeats the value: %v", err)
			}
			return
		}
		at := strings.LastIndexByte(addr, '@')
		if at < 1 || at > 64 || !strings.Contains(addr[at+1:], ".") || strings.ContainsAny(addr[at+1:], "[]") {
			t.Fatalf("accepted %q", addr)
		}
		for _, r := range addr {
			if r <= ' ' || r >= 0x7f {
				t.Fatalf("accepted %q with %U", addr, r)
			}
		}
	})
}

// FuzzCheckoutValidate: an accepted checkout's name holds no control and
// no hidden character, and Validate is idempotent.
func FuzzCheckoutValidate(f *testing.F) {
	f.Add("Ada", "ada@example.com", "no onions")
	f.Add("Ada\u202E", "a@b", "x\u2028")
	f.Fuzz(func(t *testing.T, name, email, notes string) {
		c := shop.Checkout{CustomerName: name, Email: email, Notes: notes}
		if err := c.Validate(); err != nil {
			if shop.ErrorCode(err) != shop.EINVALID {
				t.Fatalf("error of wrong kind: %v", err)
			}
			return
		}
		for _, r := range c.CustomerName {
			if unicode.IsControl(r) || r == utf8.RuneError || r == '\u202E' || r == '\u200B' || r == '\uFEFF' || r == '\u2028' {
				t.Fatalf("accepted name %q with %U", c.CustomerName, r)
			}
		}
		again := c
		if err := again.Validate(); err != nil || again != c {
			t.Fatalf("validating an accepted checkout again: %v, %+v -> %+v", err, c, again)
		}
	})
}
