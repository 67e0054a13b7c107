#!/usr/bin/env bash
# Starts and stops a throwaway ClickHouse server on loopback for tests and
# development: data, logs and config live in one temporary folder, nothing
# of the system's /etc/clickhouse-server or /var/lib/clickhouse is used.
#
#   clickhouse.sh up      start it (idempotent) and wait until it answers
#   clickhouse.sh down    stop it and remove its folder
#   clickhouse.sh stop    stop it, keep its data (up starts it again on it)
#   clickhouse.sh env     print the variables the Go tests read
#   clickhouse.sh status  exit 0 when it answers
#
# Environment (a second instance for tests that kill their server uses other
# values for all three):
#   CLICKHOUSE_DIR        folder (default ${TMPDIR:-/tmp}/apiscout-clickhouse)
#   CLICKHOUSE_TCP_PORT   native protocol port (default 19000)
#   CLICKHOUSE_HTTP_PORT  HTTP port (default 18123)
#   CLICKHOUSE_TLS_PORT   native protocol over TLS (default 19440 beside the
#                         default native port, else none; 0: none)
#
# With openssl on the PATH, up makes a throwaway CA, a server certificate
# for localhost and 127.0.0.1 and a client certificate in $dir/tls (kept
# across stop/up) and serves TLS on CLICKHOUSE_TLS_PORT. Client
# certificates are asked for, not required ("relaxed"): a client without
# one connects, one with a certificate the CA did not sign is refused.
#
# The server binary is Debian's clickhouse-server (.ci/run installs it).
set -euo pipefail

dir=${CLICKHOUSE_DIR:-${TMPDIR:-/tmp}/apiscout-clickhouse}
tcp=${CLICKHOUSE_TCP_PORT:-19000}
http=${CLICKHOUSE_HTTP_PORT:-18123}
# A second instance on other ports gets no TLS port unless it asks: the
# default one is the first instance's.
deftls=0
[ "$tcp" != 19000 ] || deftls=19440
tlsport=${CLICKHOUSE_TLS_PORT:-$deftls}
pidfile=$dir/clickhouse.pid
tls=$dir/tls

server_bin() {
	local b
	for b in clickhouse-server /usr/sbin/clickhouse-server /usr/bin/clickhouse-server; do
		if command -v "$b" >/dev/null 2>&1; then
			command -v "$b"
			return
		fi
	done
	# Official packages ship one multi-call binary.
	if command -v clickhouse >/dev/null 2>&1; then
		echo "$(command -v clickhouse) server"
		return
	fi
	echo "clickhouse.sh: clickhouse-server not found; install it with: apt-get install clickhouse-server clickhouse-client (or run .ci/run)" >&2
	exit 1
}

running() {
	[ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

answers() {
	# /ping on the HTTP port answers "Ok." once the server accepts queries.
	local r
	r=$( (exec 3<>"/dev/tcp/127.0.0.1/$http" && printf 'GET /ping HTTP/1.0\r\n\r\n' >&3 && timeout 2 cat <&3) 2>/dev/null) || return 1
	[[ $r == *Ok.* ]]
}

# make_certs writes the CA, the server's and a client's key and
# certificate into $tls once; without openssl the server has no TLS port.
make_certs() {
	[ "$tlsport" != 0 ] || return 1
	[ -s "$tls/server.pem" ] && return 0
	if ! command -v openssl >/dev/null 2>&1; then
		echo "clickhouse.sh: openssl not found: no TLS port (apt-get install openssl, or run .ci/run)" >&2
		return 1
	fi
	mkdir -p "$tls"
	(
		cd "$tls"
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=apiscout test CA" \
			-keyout ca.key -out ca.pem 2>/dev/null
		printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
		printf 'extendedKeyUsage=clientAuth\n' >client.ext
		for n in server client; do
			openssl req -newkey rsa:2048 -nodes -subj "/CN=apiscout test $n" -keyout $n.key -out $n.csr 2>/dev/null
			openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
				-extfile $n.ext -out $n.pem 2>/dev/null
			rm -f $n.csr $n.ext
		done
		# Throwaway test keys: the tests, which may run as another user
		# than the server, read the client's.
		chmod 0644 client.key
	)
}

# tls_config is the config.xml part for TLS, empty without certificates.
tls_config() {
	make_certs || return 0
	cat <<EOF
    <tcp_port_secure>$tlsport</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>$tls/server.pem</certificateFile>
            <privateKeyFile>$tls/server.key</privateKeyFile>
            <caConfig>$tls/ca.pem</caConfig>
            <verificationMode>relaxed</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
EOF
}

write_config() {
	mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
	local tlsxml
	tlsxml=$(tls_config)
	# <yandex> is the root element 18.16 knows; current servers accept it too.
	cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>50M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$tcp</tcp_port>
    <http_port>$http</http_port>
$tlsxml
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_connections>256</max_connections>
    <max_concurrent_queries>64</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mlock_executable>false</mlock_executable>
</yandex>
EOF
	cat >"$dir/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
	# The server drops root privileges to nobody it knows of: run it as the
	# clickhouse user when there is one, so it can own its folder.
	if [ "$(id -u)" = 0 ] && id clickhouse >/dev/null 2>&1; then
		chown -R clickhouse: "$dir"
	fi
}

up() {
	if running && answers; then
		echo "clickhouse: already up on 127.0.0.1:$tcp (dir $dir)"
		return
	fi
	if running; then
		kill "$(cat "$pidfile")" 2>/dev/null || true
		sleep 1
	fi
	write_config
	local bin as=()
	bin=$(server_bin)
	if [ "$(id -u)" = 0 ] && id clickhouse >/dev/null 2>&1; then
		as=(runuser -u clickhouse --)
	fi
	# shellcheck disable=SC2086
	(cd "$dir" && exec "${as[@]}" $bin --config-file="$dir/config.xml" --pidfile="$pidfile" \
		>"$dir/log/stdout.log" 2>&1) &
	local i
	for i in $(seq 1 120); do
		if answers; then
			# Old servers write the pid file only when given --pidfile; newer
			# ones want --pid-file. Find our own server by its config path.
			if [ ! -s "$pidfile" ]; then
				pgrep -f -- "--config-file=$dir/config.xml" | tail -n 1 >"$pidfile" || true
			fi
			local secure=""
			if [ "$tlsport" != 0 ] && [ -s "$tls/server.pem" ]; then
				secure=", tls $tlsport"
			fi
			echo "clickhouse: up on 127.0.0.1:$tcp (http $http$secure, dir $dir)"
			return
		fi
		if [ "$i" -gt 10 ] && ! running && ! jobs %1 >/dev/null 2>&1; then
			break
		fi
		sleep 0.5
	done
	echo "clickhouse: did not answer on 127.0.0.1:$http within 60s; logs:" >&2
	tail -n 30 "$dir/log/stdout.log" "$dir/log/clickhouse-server.err.log" >&2 2>/dev/null || true
	exit 1
}

stop() {
	if [ -f "$pidfile" ]; then
		local pid i
		pid=$(cat "$pidfile")
		kill "$pid" 2>/dev/null || true
		for i in $(seq 1 60); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -9 "$pid" 2>/dev/null || true
		rm -f "$pidfile"
	fi
}

down() {
	stop
	# Only ever remove our own temporary folder.
	if [ -f "$dir/config.xml" ]; then
		rm -rf "$dir"
	fi
	echo "clickhouse: down (dir $dir)"
}

case "${1:-}" in
up) up ;;
down) down ;;
stop)
	stop
	echo "clickhouse: stopped (data kept in $dir)"
	;;
env)
	echo "export APISCOUT_TEST_CLICKHOUSE=127.0.0.1:$tcp"
	if [ "$tlsport" != 0 ] && [ -s "$tls/ca.pem" ]; then
		echo "export APISCOUT_TEST_CLICKHOUSE_TLS=127.0.0.1:$tlsport"
		echo "export APISCOUT_TEST_CLICKHOUSE_CA=$tls/ca.pem"
		echo "export APISCOUT_TEST_CLICKHOUSE_CLIENT_CERT=$tls/client.pem"
		echo "export APISCOUT_TEST_CLICKHOUSE_CLIENT_KEY=$tls/client.key"
	fi
	;;
status) answers ;;
*)
	echo "usage: $0 up|down|stop|env|status" >&2
	exit 2
	;;
esac
