#!/usr/bin/env bash
# What `make conformance` runs: the sensor over the captures of the shared
# conformance material (Zeek's HTTP test traces), compared with the
# http.log records Zeek's maintainers accepted. usage: conformance.sh BIN DIR
set -euo pipefail
bin=${1:?usage: conformance.sh BIN DIR}
dir=${2:?usage: conformance.sh BIN DIR}
if [ ! -d "$dir/zeek" ]; then
	echo "conformance.sh: $dir/zeek not found; make conformance reads ../shared/conformance (SHARED=path to change it)" >&2
	exit 1
fi
exec "$bin" conformance "$dir" "${@:3}"
