# apiscout — see README.md. `make run` and `make test` are all a newcomer needs.
GO        ?= go
BIN       := bin/apiscout
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
DEMO_DIR  := .demo
FUZZTIME  ?= 10s
BENCH_DIR ?= .bench
SHARED    ?= ../shared
# libpcap's filter compiler (sensor.bpf) needs cgo and libpcap-dev; without
# them the binary is static and pure Go, and sensor.bpf reports that.
CGO       ?= $(shell test -e /usr/include/pcap.h && echo 1 || echo 0)

.PHONY: all build run test unit bench flood fuzz lint conformance clean \
        kafka-up kafka-down clickhouse-up clickhouse-down

all: build

build:
	CGO_ENABLED=$(CGO) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/apiscout

# One process on a demo capture the simulator makes: sensor -> analyzer ->
# embedded store, web UI and REST API on http://127.0.0.1:8080.
run: build
	./deploy/dev/run-demo.sh $(BIN) $(DEMO_DIR)

# The whole suite, with a real Kafka broker and a real ClickHouse server
# started (and stopped) by the project's own scripts.
test: build
	./deploy/dev/test.sh

# Go tests alone, against services you started with make kafka-up and
# make clickhouse-up.
unit:
	$(GO) test -count=1 ./...

bench: build
	./deploy/dev/bench.sh $(BIN) $(BENCH_DIR)

# The sensor under full-size floods (SYN, short and idle connections, an
# endless response) with legitimate traffic mixed in; figures in README.md.
flood:
	APISCOUT_FLOOD=full $(GO) test -count=1 -timeout 30m -run '^TestFlood$$' -v ./sensor/

# A short run of every fuzz target.
fuzz:
	./deploy/dev/fuzz.sh $(FUZZTIME)

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

conformance: build
	./deploy/dev/conformance.sh $(BIN) $(SHARED)/conformance

kafka-up:
	./deploy/dev/kafka.sh up
kafka-down:
	./deploy/dev/kafka.sh down
clickhouse-up:
	./deploy/dev/clickhouse.sh up
clickhouse-down:
	./deploy/dev/clickhouse.sh down

clean:
	rm -rf bin $(DEMO_DIR) $(BENCH_DIR)
