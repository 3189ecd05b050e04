package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/seed"
)

// TestBadInputIsRefusedAndChangesNothing is the one table of every bad
// input the API refuses, with its status: each is a problem document and
// leaves the database as it was.
func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	its := seed.Items(3)
	its[2].Available = false
	a := newAPI(t, options{items: its, adminToken: adminToken})
	tok := a.session()
	a.add(tok, 1, 2)

	noType := map[string]string{"Content-Type": ""}
	textPlain := map[string]string{"Content-Type": "text/plain"}
	key := func(h map[string]string) map[string]string {
		out := map[string]string{"Idempotency-Key": "bad-input"}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	pad := strings.Repeat(" ", 70<<10) // valid JSON followed by 70 KB of whitespace
	big := `{"quantity": 1, "pad": "` + strings.Repeat("x", 70<<10) + `"}`
	longEmail := strings.Repeat("a", 60000) + "@example.com"
	checkout := func(fields string) string {
		return `{"customer_name": "Ada", "email": "ada@example.com"` + fields + `}`
	}

	tests := []struct {
		name    string
		method  string
		path    string
		body    any
		header  map[string]string
		chunked bool
		status  int
	}{
		// sessions
		{"session: unknown field", "POST", "/v1/sessions", `{"admin": true}`, nil, false, 400},
		{"session: not JSON", "POST", "/v1/sessions", `admin=true`, nil, false, 400},
		{"session: no content type", "POST", "/v1/sessions", `{}`, noType, false, 415},
		{"session: text/plain", "POST", "/v1/sessions", `{}`, textPlain, false, 415},
		{"session: chunked unknown field", "POST", "/v1/sessions", `{"admin": true}`, nil, true, 400},
		{"session: chunked without content type", "POST", "/v1/sessions", `{}`, noType, true, 415},
		{"session: chunked too large", "POST", "/v1/sessions", `{}` + pad, nil, true, 413},
		{"session: too large", "POST", "/v1/sessions", big, nil, false, 413},

		// items
		{"item: letters", "GET", "/v1/items/abc", nil, nil, false, 400},
		{"item: zero", "GET", "/v1/items/0", nil, nil, false, 400},
		{"item: negative", "GET", "/v1/items/-3", nil, nil, false, 400},
		{"item: plus sign", "GET", "/v1/items/+5", nil, nil, false, 400},
		{"item: leading zeros", "GET", "/v1/items/007", nil, nil, false, 400},
		{"item: absent", "GET", "/v1/items/100000", nil, nil, false, 404},
		{"items: limit 0", "GET", "/v1/items?limit=0", nil, nil, false, 400},
		{"items: limit 101", "GET", "/v1/items?limit=101", nil, nil, false, 400},
		{"items: limit ten", "GET", "/v1/items?limit=ten", nil, nil, false, 400},
		{"items: limit +5", "GET", "/v1/items?limit=%2B5", nil, nil, false, 400},
		{"items: limit 05", "GET", "/v1/items?limit=05", nil, nil, false, 400},
		{"items: bad cursor", "GET", "/v1/items?cursor=garbage", nil, nil, false, 400},
		{"items: tampered cursor", "GET", "/v1/items?cursor=" + shop.EncodeCursor(5) + "x", nil, nil, false, 400},
		{"items: unknown parameter", "GET", "/v1/items?sort=name", nil, nil, false, 400},
		{"items: repeated parameter", "GET", "/v1/items?limit=5&limit=6", nil, nil, false, 400},
		{"items: query too long", "GET", "/v1/items?q=" + strings.Repeat("x", 101), nil, nil, false, 400},

		// cart
		{"cart: no body", "PUT", "/v1/cart/items/1", nil, nil, false, 400},
		{"cart: empty object", "PUT", "/v1/cart/items/1", `{}`, nil, false, 400},
		{"cart: negative", "PUT", "/v1/cart/items/1", `{"quantity": -1}`, nil, false, 400},
		{"cart: too many", "PUT", "/v1/cart/items/1", `{"quantity": 100}`, nil, false, 400},
		{"cart: not a number", "PUT", "/v1/cart/items/1", `{"quantity": "two"}`, nil, false, 400},
		{"cart: fraction", "PUT", "/v1/cart/items/1", `{"quantity": 1.5}`, nil, false, 400},
		{"cart: unknown field", "PUT", "/v1/cart/items/1", `{"quantity": 1, "price_cents": 1}`, nil, false, 400},
		{"cart: key in upper case", "PUT", "/v1/cart/items/1", `{"QUANTITY": 1}`, nil, false, 400},
		{"cart: key in title case", "PUT", "/v1/cart/items/1", `{"Quantity": 1}`, nil, false, 400},
		{"cart: duplicate key", "PUT", "/v1/cart/items/1", `{"quantity": 1, "quantity": 3}`, nil, false, 400},
		{"cart: not JSON", "PUT", "/v1/cart/items/1", `quantity=1`, nil, false, 400},
		{"cart: trailing data", "PUT", "/v1/cart/items/1", `{"quantity": 1} {"quantity": 5}`, nil, false, 400},
		{"cart: truncated", "PUT", "/v1/cart/items/1", `{"quantity": 1`, nil, false, 400},
		{"cart: array", "PUT", "/v1/cart/items/1", `[1]`, nil, false, 400},
		{"cart: no content type", "PUT", "/v1/cart/items/1", `{"quantity": 1}`, noType, false, 415},
		{"cart: wrong content type", "PUT", "/v1/cart/items/1", `{"quantity": 1}`, textPlain, false, 415},
		{"cart: too large", "PUT", "/v1/cart/items/1", big, nil, false, 413},
		{"cart: too large in whitespace", "PUT", "/v1/cart/items/1", `{"quantity": 1}` + pad, nil, false, 413},
		{"cart: chunked too large in whitespace", "PUT", "/v1/cart/items/1", `{"quantity": 1}` + pad, nil, true, 413},
		{"cart: bad id", "PUT", "/v1/cart/items/x", `{"quantity": 1}`, nil, false, 400},
		{"cart: id with plus sign", "PUT", "/v1/cart/items/+2", `{"quantity": 1}`, nil, false, 400},
		{"cart: id with leading zero", "PUT", "/v1/cart/items/02", `{"quantity": 1}`, nil, false, 400},
		{"cart: unknown item", "PUT", "/v1/cart/items/99", `{"quantity": 1}`, nil, false, 404},
		{"cart: unavailable item", "PUT", "/v1/cart/items/3", `{"quantity": 1}`, nil, false, 409},

		// checkout
		{"checkout: no Idempotency-Key", "POST", "/v1/orders", checkout(""), nil, false, 400},
		{"checkout: no email", "POST", "/v1/orders", `{"customer_name": "Ada"}`, key(nil), false, 400},
		{"checkout: bad email", "POST", "/v1/orders", `{"customer_name": "Ada", "email": "nope"}`, key(nil), false, 400},
		{"checkout: email of 60,012 characters", "POST", "/v1/orders", `{"customer_name": "Ada", "email": "` + longEmail + `"}`, key(nil), false, 400},
		{"checkout: NUL in name", "POST", "/v1/orders", `{"customer_name": "Ada\u0000", "email": "ada@example.com"}`, key(nil), false, 400},
		{"checkout: CRLF in name", "POST", "/v1/orders", `{"customer_name": "Ada\r\nBcc: eve@example.com", "email": "ada@example.com"}`, key(nil), false, 400},
		{"checkout: LF in email", "POST", "/v1/orders", `{"customer_name": "Ada", "email": "ada@example.com\nBcc: eve@example.com"}`, key(nil), false, 400},
		{"checkout: CR in notes", "POST", "/v1/orders", checkout(`, "notes": "a\rb"`), key(nil), false, 400},
		{"checkout: JSON in UTF-16", "POST", "/v1/orders", checkout(""), key(map[string]string{"Content-Type": "application/json; charset=utf-16"}), false, 400},
		{"checkout: lone surrogate in name", "POST", "/v1/orders", `{"customer_name": "Ada\ud800", "email": "ada@example.com"}`, key(nil), false, 400},
		{"checkout: invalid UTF-8 in name", "POST", "/v1/orders", "{\"customer_name\": \"Ada\xff\", \"email\": \"ada@example.com\"}", key(nil), false, 400},
		{"checkout: right-to-left override in name", "POST", "/v1/orders", `{"customer_name": "Ada\u202e", "email": "ada@example.com"}`, key(nil), false, 400},
		{"checkout: zero-width space in name", "POST", "/v1/orders", `{"customer_name": "A\u200bda", "email": "ada@example.com"}`, key(nil), false, 400},
		{"checkout: byte order mark in name", "POST", "/v1/orders", `{"customer_name": "\ufeffAda", "email": "ada@example.com"}`, key(nil), false, 400},
		{"checkout: email without a dot", "POST", "/v1/orders", `{"customer_name": "Ada", "email": "a@b"}`, key(nil), false, 400},
		{"checkout: email to an address literal", "POST", "/v1/orders", `{"customer_name": "Ada", "email": "a@[127.0.0.1]"}`, key(nil), false, 400},
		{"checkout: email domain starting with a hyphen", "POST", "/v1/orders", `{"customer_name": "Ada", "email": "a@-example.com"}`, key(nil), false, 400},
		{"checkout: email local part of 65 characters", "POST", "/v1/orders", `{"customer_name": "Ada", "email": "` + strings.Repeat("a", 65) + `@example.com"}`, key(nil), false, 400},
		{"checkout: email with a trailing U+2028", "POST", "/v1/orders", `{"customer_name": "Ada", "email": "ada@example.com\u2028"}`, key(nil), false, 400},
		{"checkout: key in upper case", "POST", "/v1/orders", `{"customer_name": "Ada", "EMAIL": "ada@example.com"}`, key(nil), false, 400},
		{"checkout: duplicate key", "POST", "/v1/orders", checkout(`, "email": "eve@example.com"`), key(nil), false, 400},
		{"checkout: no content type", "POST", "/v1/orders", checkout(""), key(noType), false, 415},
		{"checkout: text/plain", "POST", "/v1/orders", checkout(""), key(textPlain), false, 415},
		{"checkout: too large in whitespace", "POST", "/v1/orders", checkout("") + pad, key(nil), false, 413},
		{"order: id with leading zero", "GET", "/v1/orders/01", nil, nil, false, 400},
		{"order: letters", "GET", "/v1/orders/zero", nil, nil, false, 400},
		{"orders: bad cursor", "GET", "/v1/orders?cursor=bad", nil, nil, false, 400},

		// admin
		{"admin: nothing to change", "PUT", "/v1/admin/items/1", `{}`, nil, false, 400},
		{"admin: negative stock", "PUT", "/v1/admin/items/1", `{"stock": -1}`, nil, false, 400},
		{"admin: negative price", "PUT", "/v1/admin/items/1", `{"price_cents": -5}`, nil, false, 400},
		{"admin: unknown field", "PUT", "/v1/admin/items/1", `{"name": "x"}`, nil, false, 400},
		{"admin: not a boolean", "PUT", "/v1/admin/items/1", `{"available": "yes"}`, nil, false, 400},
		{"admin: key in mixed case", "PUT", "/v1/admin/items/1", `{"Price_Cents": 1}`, nil, false, 400},
		{"admin: duplicate key", "PUT", "/v1/admin/items/1", `{"stock": 1, "stock": 2}`, nil, false, 400},
		{"admin: no content type", "PUT", "/v1/admin/items/1", `{"stock": 1}`, noType, false, 415},
		{"admin: id with plus sign", "PUT", "/v1/admin/items/+1", `{"stock": 1}`, nil, false, 400},
		{"admin: absent item", "PUT", "/v1/admin/items/9", `{"stock": 1}`, nil, false, 404},
	}
	before := a.snapshot(tok)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := tok
			if strings.HasPrefix(tt.path, "/v1/admin/") {
				token = adminToken
			}
			a.do(req{method: tt.method, path: tt.path, token: token, body: tt.body, header: tt.header, chunked: tt.chunked}).problem(t, tt.status)
			if after := a.snapshot(tok); after != before {
				t.Fatalf("a refused request changed the state:\n%s\nwas\n%s", after, before)
			}
		})
	}
}

// snapshot is what a refused request must not change: the database's
// sessions, orders, carts and items, and the session's cart as served.
func (a *api) snapshot(token string) string {
	a.t.Helper()
	var sessions, orders, cartUnits, items int64
	err := a.db.WriteDB().QueryRow(`SELECT
		(SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM orders),
		(SELECT COALESCE(SUM(quantity), 0) FROM cart_items),
		(SELECT COALESCE(SUM(price_cents * 7 + stock * 3 + available), 0) FROM items)`).Scan(&sessions, &orders, &cartUnits, &items)
	if err != nil {
		a.t.Fatal(err)
	}
	cart := a.do(req{method: "GET", path: "/v1/cart", token: token}).body
	return fmt.Sprintf("sessions %d, orders %d, cart units %d, items %d, cart %s", sessions, orders, cartUnits, items, cart)
}

// TestOneIdempotencyKey: two Idempotency-Key headers are refused with a
// 400 that says so, rather than the first one used.
func TestOneIdempotencyKey(t *testing.T) {
	a := newAPI(t, options{})
	tok := a.session()
	a.add(tok, 1, 1)
	hr, err := http.NewRequest("POST", a.url+"/v1/orders", strings.NewReader(`{"customer_name": "Ada", "email": "ada@example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+tok)
	hr.Header.Add("Idempotency-Key", "first")
	hr.Header.Add("Idempotency-Key", "second")
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "send one Idempotency-Key header") {
		t.Fatalf("two keys: %d %s, want 400 saying to send one", res.StatusCode, body)
	}
	if n := a.snapshot(tok); !strings.Contains(n, "orders 0,") {
		t.Fatalf("an order was placed: %s", n)
	}
}

// TestRejectedValuesAreNotLogged: at debug level, a refused checkout's
// log lines name the refusal, never the value refused. (Before, the
// rejected e-mail address was written to the log.)
func TestRejectedValuesAreNotLogged(t *testing.T) {
	logs := &lockedBuffer{}
	a := newAPI(t, options{logs: logs})
	tok := a.session()
	a.add(tok, 1, 1)
	secrets := []string{"ada.secret@-example.com", "bob.secret@b", "Carol Secret\u202e", "dave.secret@[10.0.0.1]"}
	for i, v := range secrets {
		body := `{"customer_name": "Ada", "email": "` + v + `"}`
		if strings.HasPrefix(v, "Carol") {
			body = `{"customer_name": "` + v + `", "email": "ada@example.com"}`
		}
		a.do(req{method: "POST", path: "/v1/orders", token: tok, body: body,
			header: map[string]string{"Idempotency-Key": fmt.Sprint("log-", i)}}).problem(t, http.StatusBadRequest)
	}
	out := logs.String()
	if !strings.Contains(out, "request refused") {
		t.Fatalf("no refusal logged at debug level:\n%s", out)
	}
	for _, v := range []string{"secret"} {
		if strings.Contains(out, v) {
			t.Fatalf("the log holds a rejected value (%q):\n%s", v, out)
		}
	}
}

// A number too large for an id says the largest id, and one too large
// for a limit the limit's own bound: both were told they must be plain
// decimal, which they were.
func TestATooLargeNumberIsToldTheBound(t *testing.T) {
	a := newAPI(t, options{adminToken: adminToken})
	tok := a.session()
	for path, want := range map[string]string{
		"/v1/items/99999999999999999999":                            `item id must be at most 9223372036854775807, got "99999999999999999999"`,
		"/v1/orders/99999999999999999999":                           `order id must be at most 9223372036854775807, got "99999999999999999999"`,
		"/v1/items?limit=99999999999999999999":                      "limit must be between 1 and 100",
		"/v1/orders?limit=99999999999999999999":                     "limit must be between 1 and 100",
		"/v1/items?limit=-99999999999999999999":                     `limit must be a positive whole number in plain decimal (no sign, no leading zeros), got "-99999999999999999999"`,
		"/v1/admin/orders?status=placed&limit=99999999999999999999": "limit must be between 1 and 100",
	} {
		token := tok
		if strings.HasPrefix(path, "/v1/admin/") {
			token = adminToken
		}
		p := a.do(req{method: "GET", path: path, token: token}).problem(t, http.StatusBadRequest)
		if p["detail"] != want {
			t.Errorf("GET %s: detail %q, want %q", path, p["detail"], want)
		}
	}
}
