package httpapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop"
)

// The decoders must never panic, and whatever they accept must survive a
// round trip through JSON and validate without panicking.
func fuzzDecoder[T any](f *testing.F, seeds []string, validate func(T) error) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := decodeJSON[T](body)
		if err != nil {
			if shop.ErrorCode(err) != shop.EINVALID && err != errBodyTooLarge {
				t.Fatalf("decode error %v is not a client error", err)
			}
			if shop.ErrorMessage(err) == "" {
				t.Fatal("decode error without a message")
			}
			return
		}
		// Whatever is accepted names only fields of T, spelt exactly.
		var keys map[string]json.RawMessage
		if json.Unmarshal(body, &keys) == nil {
			for k := range keys {
				if !jsonFieldNames[T]()[k] {
					t.Fatalf("accepted %q with the key %q", body, k)
				}
			}
		}
		_ = validate(v)
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("accepted value does not re-encode: %v", err)
		}
		if _, err := decodeJSON[T](enc); err != nil {
			t.Fatalf("re-encoded %s does not decode: %v", enc, err)
		}
	})
}

func FuzzDecodeCheckout(f *testing.F) {
	fuzzDecoder(f, []string{
		`{"customer_name":"Ada","email":"ada@example.com"}`,
		`{"customer_name":"Ada","email":"ada@example.com","notes":"no onions"}`,
		`{"customer_name":"Ada","email":"ada@example.com","extra":1}`,
		`{"customer_name":1}`, `[]`, `null`, `{}{}`, ``, `{"email":"\u0000"}`,
		`{"CUSTOMER_NAME":"Ada","email":"ada@example.com"}`,
		`{"customer_name":"Ada","email":"ada@example.com","email":"eve@example.com"}`,
		`{"customer_name":"Ada\r\nBcc: eve@example.com","email":"ada@example.com"}`,
		`{"customer_name":"Ada","email":"ada@example.com","notes":"a\u0000b"}`,
		`{"customer_name":"Ada","email":"ada@example.com"}` + strings.Repeat(" ", 70<<10),
	}, func(c shop.Checkout) error { return c.Validate() })
}

func FuzzDecodeSetQuantity(f *testing.F) {
	fuzzDecoder(f, []string{
		`{"quantity":1}`, `{"quantity":0}`, `{"quantity":-1}`, `{"quantity":1e9}`,
		`{"quantity":"1"}`, `{"quantity":1.5}`, `{"quantity":null}`, `{"qty":1}`,
		`{"QUANTITY":1}`, `{"Quantity":1}`, `{"quantity":1,"quantity":3}`, `{"quantity":1}` + strings.Repeat("\n", 70<<10),
	}, func(q SetQuantity) error { return q.Validate() })
}

func FuzzDecodeItemUpdate(f *testing.F) {
	fuzzDecoder(f, []string{
		`{"price_cents":995}`, `{"stock":0,"available":false}`, `{"price_cents":-1}`,
		`{"available":"yes"}`, `{"stock":99999999999999999999}`, `{"name":"x"}`,
		`{"Price_Cents":1}`, `{"stock":1,"stock":2}`, `{"available":true,"AVAILABLE":false}`,
	}, func(u shop.ItemUpdate) error { return u.Validate() })
}
