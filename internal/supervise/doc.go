// Package supervise starts, records, checks and stops the processes of a
// local deployment (the cluster's replicas, worker, nginx and PostgreSQL
// servers; the scale-out test system's replicas, proxy and database): each
// process is started detached in a session of its own, inside its cgroup
// from its first instruction when it has one, and recorded in a state
// directory with its pid and start time, so a later command finds it again
// and a recycled pid is never signalled. It also makes cgroups with CPU
// quotas (cgroup v2 cpu.max or the v1 cpu controller, whichever the machine
// has), picks free ports and hands listening sockets down.
package supervise
