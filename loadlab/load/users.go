package load

import "sync"

// Users is a pool of simulated users that open-loop runs of a scenario
// spread their requests over (Config.Users), kept from one run to the
// next so that their sessions are made once, not in every run.
//
// Without a pool, an open-loop user is a request slot in flight: a run
// has as many users as it ever had requests in flight at once, a few
// dozen at a few hundred requests a second. A store that spreads
// sessions over shards by a hash of the session (shop/sharded) then gets
// its load from a few dozen sessions, and the shard that drew the most
// of them carries well over its share (two shards: 1.3 times the mean
// with nine users; four: 1.4 times with thirteen, docs/scaleout.md),
// which a shop's thousands of visitors would not do. A pool of N users
// gives each request to the user that has waited longest, so every user
// takes about 1/N of the requests once all N exist.
type Users struct {
	n    int
	mu   sync.Mutex
	made int
	idle []Session // the longest waiting first
}

// NewUsers returns a pool that makes up to n users (at least 1).
func NewUsers(n int) *Users { return &Users{n: max(n, 1)} }

// Made is how many users the pool has made so far.
func (u *Users) Made() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.made
}

// take hands out a user for one request: a new one while fewer than n
// were made (its first requests are the scenario's set-up), then the one
// that has waited longest; a new one beyond n only when every user is
// busy, as without a pool.
func (u *Users) take(s Scenario) Session {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.made < u.n || len(u.idle) == 0 {
		u.made++
		return s.NewSession()
	}
	x := u.idle[0]
	u.idle[0] = nil
	u.idle = u.idle[1:]
	return x
}

// put gives a user back once its request, and any wait it asked for, is
// over.
func (u *Users) put(x Session) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.idle = append(u.idle, x)
}
