package measure

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/perfscale/perfscale/loadlab/procwatch"
)

// LocalPort is the port of a URL whose host is this machine (localhost, a
// 127.x address or ::1), with the scheme's default when it names none;
// ok is false for any other host, or a URL that does not parse.
func LocalPort(raw string) (port int, ok bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return 0, false
	}
	host := u.Hostname()
	if host != "localhost" && !strings.HasPrefix(host, "127.") && host != "::1" {
		return 0, false
	}
	if u.Port() == "" {
		port, ok := map[string]int{"http": 80, "https": 443}[u.Scheme]
		return port, ok
	}
	port, err = strconv.Atoi(u.Port())
	return port, err == nil && port > 0
}

// Discover finds what to watch behind target: for a local URL, the
// processes serving its port and what they connect to (procwatch.Discover;
// with suspects, also PostgreSQL, nginx, Redis and NATS running here,
// never counted as the server's unless connected). For a remote target, or
// one whose processes cannot be seen, it returns an empty set and a note
// saying why the server's CPU is not measured.
func Discover(target string, suspects bool) (set *procwatch.Set, note string) {
	port, ok := LocalPort(target)
	if !ok {
		return procwatch.NewSet(), "server CPU not visible (remote target; pass --watch NAME=METRICS_URL)"
	}
	set, err := procwatch.Discover(port, suspects)
	if err != nil {
		return procwatch.NewSet(), fmt.Sprintf("server CPU not visible (%v)", err)
	}
	return set, ""
}
