package shop

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
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
// refused rather than read as 5, and one resource has one URL.
func ParsePositive(name, raw string) (int64, error) {
	n, err := strconv.ParseInt(raw, 10, 64)
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

// Validate checks a checkout body and trims its fields in place.
func (c *Checkout) Validate() error {
	c.CustomerName = strings.TrimSpace(c.CustomerName)
	c.Email = strings.TrimSpace(c.Email)
	c.Notes = strings.TrimSpace(c.Notes)
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
	case hasControl(c.CustomerName, ""):
		return Errorf(EINVALID, "customer_name must not contain control characters (such as NUL, CR or LF)")
	case hasControl(c.Email, ""):
		return Errorf(EINVALID, "email must not contain control characters (such as NUL, CR or LF)")
	case hasControl(c.Notes, "\n\t"):
		return Errorf(EINVALID, "notes must not contain control characters other than line feeds and tabs")
	}
	if a, err := mail.ParseAddress(c.Email); err != nil || a.Address != c.Email {
		return Errorf(EINVALID, "email %q is not a valid address (expected name@example.com)", c.Email)
	}
	return nil
}

// hasControl reports whether s holds a control character (C0, DEL, C1)
// other than those in allowed. Text that ends up in a mail's headers or
// body must not smuggle in line breaks or NULs.
func hasControl(s, allowed string) bool {
	for _, r := range s {
		if unicode.IsControl(r) && !strings.ContainsRune(allowed, r) {
			return true
		}
	}
	return false
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
