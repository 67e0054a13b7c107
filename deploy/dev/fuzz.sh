#!/usr/bin/env bash
# Runs every fuzz target of the module for a short time each (default 10s).
set -euo pipefail
cd "$(dirname "$0")/../.."
fuzztime=${1:-10s}
fail=0
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
	for t in $targets; do
		echo "== $pkg $t ($fuzztime)"
		if ! go test -run='^$' -fuzz="^${t}\$" -fuzztime="$fuzztime" "$pkg"; then
			fail=1
		fi
	done
done
exit $fail
