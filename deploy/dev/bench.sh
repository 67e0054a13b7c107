#!/usr/bin/env bash
# What `make bench` runs: generates a realistic capture of JSON API traffic
# (keep-alive and short connections, chunked and gzip responses, MTU-sized
# frames; BENCH_MB, default 200 MB of HTTP), then measures on one core:
#   - the sensor binary reading it with jsonl output to /dev/null (Gbps,
#     packets/s, transactions/s, peak RSS);
#   - the floors on the same file (read; read+decode; read+decode+TCP
#     reassembly) and the pipeline in-process (allocations per packet);
#   - the hot paths' micro-benchmarks.
# usage: deploy/dev/bench.sh BIN DIR
set -euo pipefail
bin=${1:?usage: bench.sh BIN DIR}
dir=${2:?usage: bench.sh BIN DIR}
mb=${BENCH_MB:-200}
cd "$(dirname "$0")/../.."
mkdir -p "$dir"
cap="$dir/capture.pcap"
if [ ! -s "$cap" ] || [ "$(cat "$dir/.mb" 2>/dev/null)" != "$mb" ]; then
	"$bin" simulate --scenario bench --size-mb "$mb" --out "$dir"
	echo "$mb" >"$dir/.mb"
fi
size=$(stat -c %s "$cap")
core=${BENCH_CORE:-0}
echo "== sensor binary, one core (GOMAXPROCS=1, taskset -c $core), jsonl to /dev/null: $(numfmt --to=iec "$size") capture"
/usr/bin/time -v -o "$dir/time.txt" env GOMAXPROCS=1 taskset -c "$core" "$bin" sensor --pcap "$cap" \
	--sensor.output jsonl --sensor.output_file /dev/null --sensor.progress=false --metrics.listen "" \
	--log.level warn --sensor.redact_key bench-key-0123456789 2>"$dir/sensor.txt"
secs=$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$dir/time.txt")
rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$dir/time.txt")
read -r packets txs < <(awk '/packets, .* transactions/{print $1, $3}' "$dir/sensor.txt")
awk -v s="$secs" -v b="$size" -v p="$packets" -v t="$txs" -v r="$rss" 'BEGIN{
	printf "| capture | seconds | Gbps | packets/s | transactions/s | peak RSS |\n|---:|---:|---:|---:|---:|---:|\n";
	printf "| %.0f MB | %.2f | %.2f | %.0f | %.0f | %.0f MB |\n", b/1e6, s, b*8/s/1e9, p/s, t/s, r/1024 }'
echo
echo "== floors and the in-process pipeline on the same file (one core)"
APISCOUT_BENCH_PCAP="$(pwd)/$cap" GOMAXPROCS=1 taskset -c "$core" go test ./sensor -run '^$' \
	-bench 'Floor|Pipeline' -benchtime 1x -count 1 | grep -E '^Benchmark'
echo
echo "== hot paths"
GOMAXPROCS=1 go test -run '^$' -bench . -benchtime 2000x -count 1 \
	./wire ./sensor/httpparse ./sensor/http2parse ./sensor/redact ./sensor/protocols ./analyzer ./analyzer/template 2>/dev/null | grep -E '^Benchmark'
