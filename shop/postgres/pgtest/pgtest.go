// Package pgtest gives each test a PostgreSQL database of its own: created
// fresh under a unique name, dropped when the test ends, so tests (and
// other people's tests on the same server) never see each other's data.
// Without a reachable server the test is skipped with a message, except
// under CI=true, where it fails: CI starts PostgreSQL and must test it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// AdminURL is the server the test databases are made on:
// SHOP_TEST_POSTGRES_URL, or the local server's postgres database.
func AdminURL() string {
	if u := os.Getenv("SHOP_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// Unavailable skips t (fails it under CI=true) with the reason.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("PostgreSQL is required under CI=true: %s", why)
	}
	t.Skipf("PostgreSQL not available (%s); start it with scripts/services.sh or set SHOP_TEST_POSTGRES_URL", why)
}

// Admin connects to the admin database, or skips t.
func Admin(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		Unavailable(t, err.Error())
	}
	return conn
}

// NewDatabase creates an empty database named after t and returns its URL;
// it is dropped (its connections closed) when t ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := Admin(t)
	defer admin.Close(context.Background())
	var b [6]byte
	rand.Read(b[:])
	name := "shoptest_" + sanitize(t.Name()) + "_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), AdminURL())
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	return WithDatabase(AdminURL(), name)
}

// WithDatabase returns u pointing at database name.
func WithDatabase(u, name string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	parsed.Path = "/" + name
	return parsed.String()
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 30 {
			break
		}
	}
	return b.String()
}

// DatabaseName is the database a URL points at.
func DatabaseName(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(parsed.Path, "/")
}

// Exec runs a statement on the admin database (to cut a test database off
// or let it back in), failing t on error.
func Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	conn := Admin(t)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
