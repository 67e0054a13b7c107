#!/usr/bin/env bash
# A throwaway Apache Kafka 4 broker (KRaft, one node acting as broker and
# controller) on loopback, for tests and development. Its jars come from
# Maven Central through mvn (deploy/dev/kafka/pom.xml), cached under
# ~/.cache/apiscout; data and logs live in one temporary folder.
#
#   kafka.sh fetch   download the jars (once; .ci/run calls it)
#   kafka.sh up      start the broker (idempotent) and wait until it serves
#   kafka.sh down    stop it and remove its folder
#   kafka.sh stop    stop it (kill -9 with KAFKA_KILL=1), keep its data
#   kafka.sh env     print the variables the Go tests read
#   kafka.sh status  exit 0 when it serves
#
# Environment (a test that kills its own broker uses other values):
#   KAFKA_DIR              folder (default ${TMPDIR:-/tmp}/apiscout-kafka)
#   KAFKA_PORT             client port (default 19092)
#   KAFKA_CONTROLLER_PORT  controller port (default 19093)
#   KAFKA_SASL_PORT        when set, also a SASL_PLAINTEXT listener there
#                          with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for
#                          user apiscout, password apiscout-secret (tests)
#   KAFKA_SSL_PORT         when set, also an SSL listener there, serving the
#                          PEM file KAFKA_SSL_PEM (unencrypted private key
#                          and certificate chain)
set -euo pipefail

version=4.1.1
here=$(cd "$(dirname "$0")" && pwd)
cache=${APISCOUT_CACHE:-$HOME/.cache/apiscout}/kafka-$version
dir=${KAFKA_DIR:-${TMPDIR:-/tmp}/apiscout-kafka}
port=${KAFKA_PORT:-19092}
cport=${KAFKA_CONTROLLER_PORT:-19093}
pidfile=$dir/kafka.pid
sport=${KAFKA_SASL_PORT:-}
tport=${KAFKA_SSL_PORT:-}

fetch() {
	if [ -f "$cache/.complete" ]; then
		return
	fi
	command -v java >/dev/null || { echo "kafka.sh: java not found: install a JDK 17 (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
	command -v mvn >/dev/null || { echo "kafka.sh: mvn not found: install Maven (apt-get install maven)" >&2; exit 1; }
	echo "kafka.sh: fetching Kafka $version jars from Maven Central" >&2
	rm -rf "$cache/libs"
	mvn -q -B -f "$here/kafka/pom.xml" -Dkafka.version="$version" \
		dependency:copy-dependencies -DoutputDirectory="$cache/libs" >&2
	touch "$cache/.complete"
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

serves() {
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null
}

up() {
	fetch
	if running && serves; then
		return
	fi
	mkdir -p "$dir/data"
	# No log.flush.interval.messages: like a production broker, this one
	# leaves flushing to the OS. A SIGKILL (the fault tests) keeps the page
	# cache, and an fsync per message would make the benchmark measure the
	# disk.
	local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
	local advertised="PLAINTEXT://127.0.0.1:$port"
	local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
	local scram=()
	if [ -n "$sport" ]; then
		listeners+=",SASL_PLAINTEXT://127.0.0.1:$sport"
		advertised+=",SASL_PLAINTEXT://127.0.0.1:$sport"
		protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
		# SCRAM credentials live in the cluster metadata: written at format.
		scram=(--add-scram 'SCRAM-SHA-256=[name=apiscout,password=apiscout-secret]'
			--add-scram 'SCRAM-SHA-512=[name=apiscout,password=apiscout-secret]')
	fi
	if [ -n "$tport" ]; then
		[ -r "${KAFKA_SSL_PEM:-}" ] || { echo "kafka.sh: KAFKA_SSL_PORT needs KAFKA_SSL_PEM, a readable PEM file" >&2; exit 1; }
		listeners+=",SSL://127.0.0.1:$tport"
		advertised+=",SSL://127.0.0.1:$tport"
		protocols+=",SSL:SSL"
	fi
	cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$dir/data
num.partitions=8
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS
	if [ -n "$sport" ]; then
		cat >>"$dir/server.properties" <<'PROPS'
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_apiscout="apiscout-secret";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS
	fi
	if [ -n "$tport" ]; then
		cat >>"$dir/server.properties" <<PROPS
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$KAFKA_SSL_PEM
PROPS
	fi
	cat >"$dir/log4j2.properties" <<PROPS
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
PROPS
	local cp="$cache/libs/*"
	local jvm=(java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
		"-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "$cp")
	if [ ! -f "$dir/data/meta.properties" ]; then
		local id
		id=$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
		"${jvm[@]}" kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" "${scram[@]}" >"$dir/format.log" 2>&1 ||
			{ echo "kafka.sh: formatting storage failed:" >&2; cat "$dir/format.log" >&2; exit 1; }
	fi
	: >"$dir/server.log"
	setsid "${jvm[@]}" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	for _ in $(seq 1 120); do
		if serves; then
			echo "kafka.sh: broker on 127.0.0.1:$port (data in $dir)" >&2
			return
		fi
		if ! running; then
			echo "kafka.sh: broker exited; its log:" >&2
			tail -n 40 "$dir/stdout.log" "$dir/server.log" >&2
			exit 1
		fi
		sleep 0.5
	done
	echo "kafka.sh: broker did not start within 60s; see $dir/server.log" >&2
	exit 1
}

stop() {
	if running; then
		local pid sig=TERM
		pid=$(cat "$pidfile")
		[ "${KAFKA_KILL:-0}" = 1 ] && sig=KILL
		kill -s "$sig" "$pid" 2>/dev/null || true
		for _ in $(seq 1 60); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
}

case "${1:-}" in
fetch) fetch ;;
up) up ;;
stop) stop ;;
down) stop; rm -rf "$dir" ;;
env) echo "export APISCOUT_TEST_KAFKA=127.0.0.1:$port" ;;
status) running && serves ;;
*) echo "usage: $0 fetch|up|down|stop|env|status" >&2; exit 2 ;;
esac
