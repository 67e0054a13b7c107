#!/usr/bin/env bash
# What `make run` runs: the whole pipeline in one process on a demo
# capture. The simulator writes DIR/capture.pcap (a few services with
# shadow and zombie endpoints, sensitive data and a couple of attacks) and
# DIR/specs (their OpenAPI documents) once; every run then starts from a
# fresh embedded store, prints a short summary when the capture is read,
# and keeps serving the web UI on http://127.0.0.1:8080 until Ctrl-C.
#
# usage: deploy/dev/run-demo.sh BIN DIR
set -euo pipefail
bin=${1:?usage: run-demo.sh BIN DIR}
dir=${2:?usage: run-demo.sh BIN DIR}
mkdir -p "$dir"
if [ ! -s "$dir/capture.pcap" ]; then
	echo "run-demo: simulating the demo capture into $dir"
	"$bin" simulate --scenario demo --out "$dir"
fi
args=(--sensor.pcap "$dir/capture.pcap" --storage.kind embedded --storage.path "$dir/apiscout.db")
if [ -d "$dir/specs" ]; then
	args+=(--analyzer.specs "$dir/specs")
fi
# A fresh inventory each time: the demo shows what one capture yields.
rm -f "$dir/apiscout.db" "$dir/apiscout.db-wal" "$dir/apiscout.db-shm"
exec "$bin" run "${args[@]}" "${@:3}"
