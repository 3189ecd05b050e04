package shop

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// NewToken returns a fresh opaque session token (256 random bits) and the
// hash under which it is stored.
func NewToken() (token, hash string) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token)
}

// HashToken is the stored form of a token. A fast hash is enough: tokens are
// 256 random bits, so there is nothing to brute-force.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ValidateQuantity checks a cart quantity (0 removes the line).
func ValidateQuantity(q int) error {
	if q < 0 || q > MaxQuantity {
		return Errorf(EINVALID, "quantity must be between 0 and %d, got %d", MaxQuantity, q)
	}
	return nil
}

// ParsePositive reads a positive whole number given as text (a path id,
// a limit): canonical decimal only, so "+5", "007", " 5" and "5.0" are
// refused rather than read as 5, and one resource has one URL. A plain
// decimal past math.MaxInt64 is refused with its n, math.MaxInt64, so a
// caller with a bound of its own can say that bound instead.
func ParsePositive(name, raw string) (int64, error) {
	n, err := strconv.ParseInt(raw, 10, 64)
	if n == math.MaxInt64 && errors.Is(err, strconv.ErrRange) && strings.TrimLeft(raw, "0123456789") == "" && raw[0] != '0' {
		// Plain decimal, only too large: saying it must be plain decimal
		// would be wrong.
		return n, Errorf(EINVALID, "%s must be at most %d, got %q", name, n, raw)
	}
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != raw {
		return 0, Errorf(EINVALID, "%s must be a positive whole number in plain decimal (no sign, no leading zeros), got %q", name, raw)
	}
	return n, nil
}

// ParseID reads the id of a what (item, order) from a path.
func ParseID(what, raw string) (int64, error) {
	return ParsePositive(what+" id", raw)
}

// ValidateID checks an id taken from a path or cursor.
func ValidateID(what string, id int64) error {
	if id < 1 {
		return Errorf(EINVALID, "%s id must be a positive integer", what)
	}
	return nil
}

// ValidateIdempotencyKey checks a checkout's Idempotency-Key header.
func ValidateIdempotencyKey(key string) error {
	switch {
	case key == "":
		return Errorf(EINVALID, "the Idempotency-Key header is required for checkout: send a unique value (a UUID) per order and reuse it only to retry")
	case len(key) > MaxIdempotencyKey:
		return Errorf(EINVALID, "the Idempotency-Key header must be at most %d characters", MaxIdempotencyKey)
	}
	for _, r := range key {
		if r < 0x21 || r > 0x7e {
			return Errorf(EINVALID, "the Idempotency-Key header must be printable ASCII without spaces")
		}
	}
	return nil
}

// Validate checks a checkout body and trims its fields in place. Its
// messages name the field and the rule, never the value: they reach the
// logs, and a rejected address is personal data.
func (c *Checkout) Validate() error {
	c.CustomerName = trimASCIISpace(c.CustomerName)
	c.Email = trimASCIISpace(c.Email)
	c.Notes = trimASCIISpace(c.Notes)
	switch {
	case c.CustomerName == "":
		return Errorf(EINVALID, "customer_name is required")
	case utf8.RuneCountInString(c.CustomerName) > MaxCustomerNameLen:
		return Errorf(EINVALID, "customer_name must be at most %d characters", MaxCustomerNameLen)
	case c.Email == "":
		return Errorf(EINVALID, "email is required: the confirmation is sent there")
	case utf8.RuneCountInString(c.Notes) > MaxNotesLen:
		return Errorf(EINVALID, "notes must be at most %d characters", MaxNotesLen)
	case c.ExpectedTotalCents != nil && *c.ExpectedTotalCents < 0:
		return Errorf(EINVALID, "expected_total_cents must not be negative: send the cart's total_cents as you showed it")
	case len(c.Email) > MaxEmailLen:
		return Errorf(EINVALID, "email must be at most %d characters", MaxEmailLen)
	}
	if err := checkText("customer_name", c.CustomerName, ""); err != nil {
		return err
	}
	if err := checkText("notes", c.Notes, "\n\t"); err != nil {
		return err
	}
	return ValidateEmail(c.Email)
}

// trimASCIISpace trims spaces, tabs and line ends. Other Unicode spaces
// stay, to be judged: U+2028 (a line separator) after an address is not
// padding to drop but a character that does not belong there.
func trimASCIISpace(s string) string { return strings.Trim(s, " \t\r\n") }

// checkText refuses, in a field of free text, control characters (C0, DEL,
// C1) other than those in allowed, and the characters that change what a
// person reads without being seen (hiddenRune). Text that ends up in a
// mail's headers or body, or on a screen, must not smuggle in line breaks,
// NULs or reordered text.
func checkText(field, s, allowed string) error {
	for _, r := range s {
		switch {
		case unicode.IsControl(r) && !strings.ContainsRune(allowed, r):
			if allowed == "" {
				return Errorf(EINVALID, "%s must not contain control characters (such as NUL, CR or LF)", field)
			}
			return Errorf(EINVALID, "%s must not contain control characters other than line feeds and tabs", field)
		case hiddenRune(r):
			return Errorf(EINVALID, "%s must not contain U+%04X: bidirectional controls, zero-width and line-separator characters, byte order marks and U+FFFD (what a lone surrogate or invalid UTF-8 decodes to) are refused", field, r)
		}
	}
	return nil
}

// hiddenRune reports a character that changes how text reads without
// showing: the bidirectional controls (which can reorder what a person
// sees, as in "Trojan Source"), zero-width space, word joiner and byte
// order mark, the line and paragraph separators, and U+FFFD, which
// encoding/json puts in place of a lone surrogate ("\ud800") or invalid
// UTF-8. Zero-width joiner and non-joiner (U+200C, U+200D) are allowed:
// scripts such as Persian and emoji sequences need them.
func hiddenRune(r rune) bool {
	switch r {
	case '\u061C', '\u200E', '\u200F', // Arabic letter mark, LRM, RLM
		'\u202A', '\u202B', '\u202C', '\u202D', '\u202E', // embeddings and overrides
		'\u2066', '\u2067', '\u2068', '\u2069', // isolates
		'\u200B', '\u2060', '\uFEFF', // zero-width space, word joiner, BOM
		'\u2028', '\u2029', // line and paragraph separators
		utf8.RuneError:
		return true
	}
	return false
}

// ValidateEmail checks an address to send a confirmation to: a bare
// address (no display name) by RFC 5322 as net/mail parses it, printable
// ASCII (RFC 5321; internationalized addresses are not taken), a local
// part of at most 64 octets, and a domain SMTP can resolve (checkDomain).
func ValidateEmail(addr string) error {
	for i := 0; i < len(addr); i++ {
		if b := addr[i]; b <= ' ' || b >= 0x7f {
			if b < ' ' || b == 0x7f {
				return Errorf(EINVALID, "email must not contain control characters (such as NUL, CR or LF)")
			}
			return Errorf(EINVALID, "email must be printable ASCII without spaces (write an internationalized domain in its xn-- form)")
		}
	}
	if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr {
		return Errorf(EINVALID, "email is not a valid address (expected name@example.com)")
	}
	at := strings.LastIndexByte(addr, '@')
	if at > 64 {
		return Errorf(EINVALID, "email's part before the @ must be at most 64 characters (RFC 5321)")
	}
	return checkDomain(addr[at+1:])
}

// checkDomain accepts a host name SMTP can deliver to: at least two
// labels, each 1 to 63 letters, digits or hyphens not starting or ending
// with a hyphen, a top-level label that is not all digits, 253 characters
// in all. An address literal ([127.0.0.1]) is refused: mail to a bare IP
// address is a way to reach internal hosts, not a customer.
func checkDomain(d string) error {
	bad := func(why string) error {
		return Errorf(EINVALID, "email's domain %s", why)
	}
	if strings.HasPrefix(d, "[") {
		return bad("must be a host name, not an address literal such as [127.0.0.1]")
	}
	if len(d) > 253 {
		return bad("must be at most 253 characters")
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return bad("must have a dot (a name such as example.com)")
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return bad("must be dot-separated labels of 1 to 63 characters")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return bad("labels must not start or end with a hyphen")
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
				return bad("must be letters, digits, hyphens and dots")
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return bad("must end in a name, not a number")
	}
	return nil
}

// Fingerprint identifies the checkout's content, for idempotency: the same
// fields give the same fingerprint whatever the JSON's spacing or key order.
func (c Checkout) Fingerprint() string {
	b, _ := json.Marshal(c) // a struct of strings always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Validate checks an admin change.
func (u ItemUpdate) Validate() error {
	if u.PriceCents == nil && u.Stock == nil && u.Available == nil {
		return Errorf(EINVALID, "nothing to change: send at least one of price_cents, stock, available")
	}
	if u.PriceCents != nil && (*u.PriceCents < 0 || *u.PriceCents > MaxPriceCents) {
		return Errorf(EINVALID, "price_cents must be between 0 and %d", int64(MaxPriceCents))
	}
	if u.Stock != nil && (*u.Stock < 0 || *u.Stock > MaxStock) {
		return Errorf(EINVALID, "stock must be between 0 and %d", MaxStock)
	}
	return nil
}

// Normalize checks an item filter and fills in defaults.
func (f *ItemFilter) Normalize() error {
	f.Query = strings.TrimSpace(f.Query)
	f.Category = strings.TrimSpace(f.Category)
	if utf8.RuneCountInString(f.Query) > MaxSearchQueryLen {
		return Errorf(EINVALID, "q must be at most %d characters", MaxSearchQueryLen)
	}
	if f.After < 0 {
		return Errorf(EINVALID, "invalid cursor")
	}
	return normalizeLimit(&f.Limit)
}

// Normalize checks an order filter and fills in defaults.
func (f *OrderFilter) Normalize() error {
	if f.Before < 0 {
		return Errorf(EINVALID, "invalid cursor")
	}
	return normalizeLimit(&f.Limit)
}

func normalizeLimit(limit *int) error {
	switch {
	case *limit == 0:
		*limit = DefaultPageSize
	case *limit < 0 || *limit > MaxPageSize:
		return Errorf(EINVALID, "limit must be between 1 and %d", MaxPageSize)
	}
	return nil
}

// cursorPrefix versions the cursor format so it can change without clients
// mistaking an old cursor for a new one.
const cursorPrefix = "v1:"

// EncodeCursor turns a keyset position into the opaque cursor clients pass
// back; 0 (no further page) encodes as "".
func EncodeCursor(pos int64) string {
	if pos == 0 {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(pos, 10)))
}

// DecodeCursor is the inverse of EncodeCursor; "" decodes to 0 (first page).
func DecodeCursor(c string) (int64, error) {
	if c == "" {
		return 0, nil
	}
	bad := Errorf(EINVALID, "cursor is not valid: pass back the next_cursor value of the previous page unchanged")
	if len(c) > 64 {
		return 0, bad
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(c)
	if err != nil {
		return 0, bad
	}
	s, ok := strings.CutPrefix(string(raw), cursorPrefix)
	if !ok {
		return 0, bad
	}
	pos, err := strconv.ParseInt(s, 10, 64)
	if err != nil || pos < 1 || strconv.FormatInt(pos, 10) != s {
		return 0, bad
	}
	return pos, nil
}
