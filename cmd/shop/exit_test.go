package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// shop exits as loadlab does: 2 on bad input (nothing started), 1 when
// it cannot start, 0 after --help; each error is one line on stderr. Bad
// input exited 1 before.
func TestExitCodes(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--workers", "0"}, exitBadInput, "shop: --workers must be"},
		{[]string{"--no-such-flag"}, exitBadInput, "shop: flag provided but not defined: -no-such-flag (see shop --help)"},
		{[]string{"serve"}, exitBadInput, `shop: unexpected argument "serve"`},
		{[]string{"--log-level", "loud"}, exitBadInput, "shop: --log-level must be"},
		{[]string{"--addr", "127.0.0.1:99999"}, exitBadInput, `shop: --addr must be HOST:PORT or :PORT with a port from 0 to 65535, got "127.0.0.1:99999"`},
		{[]string{"--addr", "127.0.0.1"}, exitBadInput, "shop: --addr must be HOST:PORT"},
		{[]string{"--addr", ":http"}, exitBadInput, "shop: --addr must be HOST:PORT"},
		{[]string{"--admin-addr", ":-1"}, exitBadInput, "shop: --admin-addr must be HOST:PORT"},
		{[]string{"--admin-addr", "127.0.0.1:65536"}, exitBadInput, "shop: --admin-addr must be HOST:PORT"},
		{[]string{"--addr", "127.0.0.1:18080", "--admin-addr", "127.0.0.1:18080"}, exitBadInput, `shop: --admin-addr must differ from --addr, both "127.0.0.1:18080"`},
		{[]string{"drop-events"}, exitBadInput, "shop: drop-events needs --nats"},
		{[]string{"reshard", "--db", "mysql://x/y"}, exitBadInput, "shop: reshard: --db must be a postgres:// URL"},
		{[]string{"migrate", "--db", "postgres://nobody@127.0.0.1:1/shop"}, exitFailed, "shop: postgres at 127.0.0.1:1/shop is not reachable"},
		{[]string{"--help"}, 0, ""},
		{[]string{"reshard", "--help"}, 0, ""},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd := exec.Command(exe, append(tt.args, "--data-dir", t.TempDir())...)
			if tt.args[0] == "reshard" {
				cmd.Args = append([]string{exe}, tt.args...) // reshard has no --data-dir
			}
			cmd.Env = append(os.Environ(), "SHOP_TEST_RUN_MAIN=1")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			line := strings.TrimSuffix(stderr.String(), "\n")
			if code != tt.code || !strings.HasPrefix(line, tt.want) || (tt.code != 0 && strings.Contains(line, "\n")) {
				t.Errorf("exit %d, stderr %q; want exit %d and one line starting %q", code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}

// A start on an address in use (the API's or the admin listener's) fails
// with one line and exit 1 before it makes the data directory or seeds a
// catalog: it made and seeded a new one, then failed to listen.
func TestAnAddressInUseFailsBeforeTheDataDirectory(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"api", []string{"--addr", addr}, "shop: the API: listen on " + addr + ": bind: address already in use"},
		{"admin", []string{"--addr", "127.0.0.1:0", "--admin-addr", addr}, "shop: the admin listener: listen on " + addr + ": bind: address already in use"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			cmd := exec.Command(exe, append(tt.args, "--data-dir", dir)...)
			cmd.Env = append(os.Environ(), "SHOP_TEST_RUN_MAIN=1")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != exitFailed {
				t.Fatalf("run: %v; want exit %d", err, exitFailed)
			}
			if got := strings.TrimSuffix(stderr.String(), "\n"); got != tt.want {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the data directory %s exists after the failed start (stat: %v); logs: %s", dir, err, stdout.String())
			}
		})
	}
}

// Every subcommand's --help and -h print its own usage, exit 0: shop
// migrate --help and shop drop-events --help printed the service's, all
// of its flags. A subcommand's help lists the flags it reads, each one.
func TestEverySubcommandsHelpIsItsOwn(t *testing.T) {
	for _, sub := range []string{"migrate", "drop-events", "reshard"} {
		for _, h := range []string{"--help", "-h"} {
			t.Run(sub+" "+h, func(t *testing.T) {
				var out bytes.Buffer
				err := run(context.Background(), []string{sub, h}, func(string) string { return "" }, &out)
				help := out.String()
				if exitCode(err) != 0 || !strings.HasPrefix(help, "Usage: shop "+sub+" ") || strings.Contains(help, "Runs the ordering service") {
					t.Fatalf("exit %d (%v), help:\n%s\nwant exit 0 and shop %s's own usage", exitCode(err), err, help, sub)
				}
				for _, name := range subcommands[sub].reads {
					if !strings.Contains(help, "\n  -"+name+" ") {
						t.Errorf("help lacks the flag --%s it reads:\n%s", name, help)
					}
				}
			})
		}
	}
}
