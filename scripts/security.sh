#!/usr/bin/env bash
# The security scanners of .ci/run, at pinned versions, fetched through the
# Go module proxy (go run module@version: they stay out of go.mod):
#   - govulncheck against a local copy of the Go vulnerability database,
#     built from a pinned snapshot of the golang.org/x/vulndb module (the
#     public service cannot be reached from these machines); the README
#     says how old the snapshot is. A module's vulnerable package that the
#     code imports fails the run; the standard library's findings are
#     listed and do not (VULNCHECK_STDLIB=fail makes them fail): they are
#     fixed by a newer Go toolchain, not by this repository's code.
#   - gosec over the service, each exclusion justified below.
# Safe to run by hand: scripts/security.sh
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."

VULN=golang.org/x/vuln/cmd/govulncheck@v1.9.0
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
GOSEC=github.com/securego/gosec/v2/cmd/gosec@v2.30.0

# .ci/run builds the scanners ahead, while the tests run.
case "${1:-}" in
  --print-gosec) echo "$GOSEC"; exit 0 ;;
  --print-govulncheck) echo "$VULN"; exit 0 ;;
esac

tmp=$(mktemp -d /tmp/security.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# go mod download outside this module: the snapshot is not a dependency.
vulndb=$(cd "$tmp" && go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
if [ ! -d "$vulndb/data/osv" ]; then
  echo "security: golang.org/x/vulndb@$VULNDB_VERSION has no data/osv" >&2
  exit 1
fi
go run ./scripts/vulncheck index -version "$VULNDB_VERSION" "$vulndb/data/osv" "$tmp/vulndb"

# -scan package: which vulnerable packages are imported (about 6 s); the
# symbol scan (is the vulnerable function reachable) builds call graphs of
# the whole program and takes minutes on this machine.
echo "security: govulncheck -scan package ./..."
status=0
go run "$VULN" -db "file://$tmp/vulndb" -scan package -format json ./... >"$tmp/vuln.json" || status=$?
# govulncheck exits 3 when it found something; judge decides what fails.
if [ "$status" != 0 ] && [ "$status" != 3 ]; then
  echo "security: govulncheck failed (exit $status)" >&2
  exit 1
fi
go run ./scripts/vulncheck judge -stdlib "${VULNCHECK_STDLIB:-report}" <"$tmp/vuln.json"

# gosec over the service: its packages and its command (./shop/...,
# ./cmd/shop), the code a request reaches. The lab, the cluster command and
# the scripts are tools whose every input is their own user's (files,
# flags, the processes they start); scanning them too took 4 min 41 s at a
# load average of 26 and found only what the exclusions below say.
# Exclusions, each for a reason that holds for every site it covers:
#   G104 (errors unhandled): the unchecked calls are deferred Close calls,
#        writes to a response whose client may be gone and a log buffer's
#        writes, where nothing can be done; go vet and staticcheck run.
#   G204 (subprocess launched with a variable): only the test helpers
#        redistest and natstest start processes (redis-server and
#        nats-server, with arguments they build); no request reaches them.
#   G304, G703 (file path from a variable): the service opens its own lock
#        file and makes the data directory its operator names (--data-dir);
#        it reads no file a request names.
#   G306 (file written 0644): the code generator under shop/instrument
#        writes a source file, as every generator does.
# The sites a rule flags that hold for a reason of their own carry
# "#nosec RULE -- reason" on their line (integer conversions of bounded
# values, G115; an index checked on the same line, G602).
# Test files are left out (-tests=false is gosec's default): they start
# servers, write temporary files and use fixed tokens on purpose.
echo "security: gosec ./shop/... ./cmd/shop/..."
go run "$GOSEC" -quiet -fmt golint -exclude=G104,G204,G304,G306,G703 ./shop/... ./cmd/shop/...
echo "security: done"
