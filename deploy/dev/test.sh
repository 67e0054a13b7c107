#!/usr/bin/env bash
# Runs the whole Go test suite with real services: a Kafka broker and a
# ClickHouse server started by this project's scripts on loopback, stopped
# on exit. Their addresses reach the tests as APISCOUT_TEST_KAFKA and
# APISCOUT_TEST_CLICKHOUSE.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=deploy/dev
started=()
cleanup() {
	for s in "${started[@]}"; do "$here/$s.sh" down || true; done
}
trap cleanup EXIT
for s in kafka clickhouse chdb; do
	if [ -x "$here/$s.sh" ]; then
		"$here/$s.sh" up
		started+=("$s")
		# shellcheck disable=SC1090
		source <("$here/$s.sh" env)
	fi
done
# Tests that build network namespaces need root; they fail (not skip)
# without it, with a message that says so.
go test -count=1 -timeout 30m ${GOTESTFLAGS:-} ./...
