#!/usr/bin/env bash
# Installs chdb, ClickHouse as a shared library (PyPI package chdb-core,
# a current ClickHouse release), for the test that checks every DDL
# statement and dashboard query against the current SQL dialect while CI's
# server is Debian's old 18.16. The test loads the library without Python
# (storage/clickhouse/chdb_test.go); pip only fetches and unpacks it.
#
#   chdb.sh install   fetch it once into $APISCOUT_CHDB_DIR (~180 MB download, ~560 MB on disk)
#   chdb.sh up        the same, but a failure does not stop the caller (deploy/dev/test.sh)
#   chdb.sh env       print the variable the Go test reads
#   chdb.sh down      nothing to stop
set -euo pipefail

version=26.9.0
dir=${APISCOUT_CHDB_DIR:-$HOME/.cache/apiscout/chdb}
lib=$dir/chdb/_chdb.abi3.so

install() {
	if [ -f "$lib" ] && [ -f "$dir/.version-$version" ]; then
		return
	fi
	local py
	py=$(command -v python3 || command -v python || true)
	if [ -z "$py" ] || ! "$py" -m pip --version >/dev/null 2>&1; then
		echo "chdb.sh: python3 with pip is needed to fetch chdb-core from PyPI (apt-get install python3-pip)" >&2
		exit 1
	fi
	rm -rf "$dir"
	mkdir -p "$dir"
	# --no-deps: the library needs none of the Python packages.
	# --target installs into our folder only, so the system Python is not
	# touched (hence the override of Debian's externally-managed marker).
	PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1 "$py" -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir" "chdb-core==$version"
	touch "$dir/.version-$version"
	echo "chdb: chdb-core $version in $dir"
}

case "${1:-}" in
install) install ;;
up)
	# For the test run: a failed fetch must not stop the other tests; the
	# dialect test then fails and says how to install it.
	(install) || echo "chdb.sh: chdb-core could not be installed; TestCurrentDialect will fail" >&2
	;;
env) echo "export APISCOUT_CHDB_LIB=$lib" ;;
down) ;;
*)
	echo "usage: $0 install|up|env|down" >&2
	exit 2
	;;
esac
