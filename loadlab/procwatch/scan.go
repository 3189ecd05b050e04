package procwatch

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
)

// tcpListen is the LISTEN state in /proc/net/tcp.
const tcpListen = 0x0A

// proc is one process as a scan saw it.
type proc struct {
	pid, ppid int
	comm      string
	sockets   []uint64 // inodes of its sockets
}

// socket is one TCP socket from /proc/net/tcp{,6}.
type socket struct {
	local, remote net.IP
	lport, rport  int
	state         uint64
}

// scan is one look at the machine's processes and TCP sockets.
type scan struct {
	procs     map[int]*proc
	children  map[int][]int
	sockets   map[uint64]socket // by inode
	listeners map[int][]uint64  // port -> listening inodes
	owners    map[uint64][]int  // socket inode -> pids holding it
}

// newScan reads every visible process (with its sockets when withSockets)
// and the TCP socket tables.
func newScan(withSockets bool) (*scan, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	all, err := fs.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	s := &scan{procs: map[int]*proc{}, children: map[int][]int{}, sockets: map[uint64]socket{},
		listeners: map[int][]uint64{}, owners: map[uint64][]int{}}
	for _, p := range all {
		st, err := p.Stat()
		if err != nil {
			continue // it exited
		}
		pr := &proc{pid: p.PID, ppid: st.PPID, comm: st.Comm}
		if withSockets {
			targets, _ := p.FileDescriptorTargets() // another user's: not visible
			for _, t := range targets {
				if in, ok := socketInode(t); ok {
					pr.sockets = append(pr.sockets, in)
					s.owners[in] = append(s.owners[in], p.PID)
				}
			}
		}
		s.procs[p.PID] = pr
		s.children[st.PPID] = append(s.children[st.PPID], p.PID)
	}
	if !withSockets {
		return s, nil
	}
	//lint:ignore SA1019 the socket tables in /proc are what ties a port to a process's fds; sock_diag over netlink would add a dependency for the same answer
	for _, table := range []func() (procfs.NetTCP, error){fs.NetTCP, fs.NetTCP6} {
		lines, err := table()
		if err != nil {
			continue
		}
		for _, l := range lines {
			s.sockets[l.Inode] = socket{local: l.LocalAddr, remote: l.RemAddr, lport: int(l.LocalPort), rport: int(l.RemPort), state: l.St}
			if l.St == tcpListen {
				s.listeners[int(l.LocalPort)] = append(s.listeners[int(l.LocalPort)], l.Inode)
			}
		}
	}
	return s, nil
}

// socketInode reads "socket:[12345]", the target of a socket's fd link.
func socketInode(target string) (uint64, bool) {
	rest, ok := strings.CutPrefix(target, "socket:[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return 0, false
	}
	n, err := strconv.ParseUint(rest[:len(rest)-1], 10, 64)
	return n, err == nil
}

// tree is pid and all its descendants.
func (s *scan) tree(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, s.children[out[i]]...)
	}
	return out
}

// listenerPIDs are the processes holding a listening socket on port.
func (s *scan) listenerPIDs(port int) []int {
	seen := map[int]bool{}
	var out []int
	for _, in := range s.listeners[port] {
		for _, pid := range s.owners[in] {
			if !seen[pid] {
				seen[pid] = true
				out = append(out, pid)
			}
		}
	}
	sort.Ints(out)
	return out
}

// roots keeps the processes whose parent is not among them: nginx's master
// of master and workers, each replica of several.
func roots(pids []int, s *scan) []int {
	in := map[int]bool{}
	for _, p := range pids {
		in[p] = true
	}
	var out []int
	for _, p := range pids {
		if pr := s.procs[p]; pr == nil || !in[pr.ppid] {
			out = append(out, p)
		}
	}
	return out
}

// localIP reports whether an address is this machine's: loopback, or one
// of its interfaces'.
func localIP(ip net.IP, own map[string]bool) bool {
	return ip.IsLoopback() || ip.IsUnspecified() || own[ip.String()]
}

func ownAddresses() map[string]bool {
	own := map[string]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			own[n.IP.String()] = true
		}
	}
	return own
}

// upstreamPorts are the local listening ports that the processes pids
// hold connections to: where a proxy forwards, where a service keeps its
// database connections.
func (s *scan) upstreamPorts(pids []int, own map[string]bool) []int {
	seen := map[int]bool{}
	var out []int
	for _, pid := range pids {
		pr := s.procs[pid]
		if pr == nil {
			continue
		}
		for _, in := range pr.sockets {
			sk, ok := s.sockets[in]
			if !ok || sk.state == tcpListen || !localIP(sk.remote, own) || seen[sk.rport] {
				continue
			}
			if len(s.listeners[sk.rport]) == 0 || sk.rport == sk.lport {
				continue // an accepted connection: the remote end is a client
			}
			if isListening(s, pid, sk.lport) {
				continue // accepted on one of its own listening ports
			}
			seen[sk.rport] = true
			out = append(out, sk.rport)
		}
	}
	sort.Ints(out)
	return out
}

// isListening reports whether pid holds a listening socket on port.
func isListening(s *scan, pid, port int) bool {
	for _, in := range s.listeners[port] {
		for _, p := range s.owners[in] {
			if p == pid {
				return true
			}
		}
	}
	return false
}
