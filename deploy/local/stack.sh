#!/usr/bin/env bash
# The local stack without Docker: Kafka (KRaft, Maven Central jars), PostgreSQL (Debian),
# a MongoDB wire-protocol server (FerretDB built from the Go module proxy) and, on request,
# a Confluent-compatible schema registry (Apicurio). Everything binds to 127.0.0.1.
#
#   stack.sh up [--with-registry]   install what is missing (cached), start what is down, wait
#   stack.sh status                 one line per service: up/down
#   stack.sh down                   stop everything
#   stack.sh restart SERVICE        stop and start one service (kafka|postgres|mongo|registry)
#   stack.sh stop SERVICE           stop one service
#   stack.sh env                    print the connection settings file
#
# Kafka also listens with SASL_SSL (SCRAM-SHA-512) on 127.0.0.1:9094: a CA and a broker
# certificate made here with openssl and a SCRAM user `syncflow` (added with Kafka's own
# ConfigCommand), all kept in $SYNCFLOW_STACK_DIR/kafka/tls. stack.env names them with
# SYNCFLOW_LOCAL_KAFKA_SASL_SSL_* (for tests; the settings' default stays the plaintext 9092).
#
# Downloads and builds are cached in $SYNCFLOW_CACHE (default ~/.cache/syncflow); data, logs
# and pid files live in $SYNCFLOW_STACK_DIR (default /var/lib/syncflow as root, else
# ~/.local/state/syncflow). The connection settings are written to $SYNCFLOW_STACK_DIR/stack.env.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${SYNCFLOW_CACHE:-$HOME/.cache/syncflow}"
if [ "$(id -u)" = 0 ]; then DEFAULT_STACK=/var/lib/syncflow; else DEFAULT_STACK="$HOME/.local/state/syncflow"; fi
STACK="${SYNCFLOW_STACK_DIR:-$DEFAULT_STACK}"
PY="${SYNCFLOW_PYTHON:-$REPO/.venv/bin/python}"

KAFKA_PORT="${SYNCFLOW_LOCAL_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${SYNCFLOW_LOCAL_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_SASL_SSL_PORT="${SYNCFLOW_LOCAL_KAFKA_SASL_SSL_PORT:-9094}"
KAFKA_SCRAM_USER=syncflow
PG_PORT="${SYNCFLOW_LOCAL_PG_PORT:-5432}"
MONGO_PORT="${SYNCFLOW_LOCAL_MONGO_PORT:-27017}"
REGISTRY_PORT="${SYNCFLOW_LOCAL_REGISTRY_PORT:-8081}"
APICURIO_VERSION=3.3.3

KAFKA_LIBS="$CACHE/kafka-libs"
FERRET_BIN="$CACHE/bin/ferretdb-runner"
APICURIO_DIR="$CACHE/apicurio-$APICURIO_VERSION"

log() { printf '%s\n' "$*" >&2; }
die() { log "stack: $*"; exit 1; }

fail_service() { # name logfile
  log "stack: $1 did not come up. Last lines of $2:"
  tail -n 40 "$2" >&2 2>/dev/null || true
  exit 1
}

pid_alive() { # pidfile
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() { # name logfile seconds check-command...
  local name=$1 logf=$2 secs=$3; shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && fail_service "$name" "$logf"
    sleep 0.5
  done
}

# ---------------------------------------------------------------- checks (really answer?)
check_kafka() {
  "$PY" - "$KAFKA_PORT" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": f"127.0.0.1:{sys.argv[1]}"}).list_topics(timeout=3)
assert md.brokers
EOF
}
# the SASL_SSL listener, with the stack's CA and SCRAM user (host name checked: the broker
# certificate names 127.0.0.1 and localhost)
check_kafka_secure() {
  local tls="$STACK/kafka/tls"
  [ -f "$tls/ca.crt" ] && [ -f "$tls/$KAFKA_SCRAM_USER.password" ] || return 1
  "$PY" - "$KAFKA_SASL_SSL_PORT" "$tls/ca.crt" "$KAFKA_SCRAM_USER" "$tls/$KAFKA_SCRAM_USER.password" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient
port, ca, user, pw = sys.argv[1:]
md = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_SSL",
                  "ssl.ca.location": ca, "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user,
                  "sasl.password": open(pw).read().strip()}).list_topics(timeout=3)
assert md.brokers
EOF
}
check_postgres() {
  PGPASSWORD=syncflow psql -h 127.0.0.1 -p "$PG_PORT" -U syncflow -d syncflow -tAc 'SELECT 1' | grep -q 1
}
check_postgres_server() { pg_isready -h 127.0.0.1 -p "$PG_PORT" -q; }
check_mongo() {
  "$PY" - "$MONGO_PORT" <<'EOF'
import sys
from pymongo import MongoClient
MongoClient(f"mongodb://127.0.0.1:{sys.argv[1]}/", serverSelectionTimeoutMS=2000).admin.command("hello")
EOF
}
check_registry() {
  "$PY" - "$REGISTRY_PORT" <<'EOF'
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/apis/ccompat/v7/subjects", timeout=2).read()
EOF
}

# ---------------------------------------------------------------- installs (cached)
ensure_python() {
  [ -x "$PY" ] || die "no Python environment at $PY; run 'make setup' (or 'make demo'/'make test') first"
}

ensure_java() {
  command -v java >/dev/null || { log "stack: installing Java"; apt_install default-jre-headless; }
}

apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { apt-get update -qq >&2; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

ensure_kafka_libs() {
  [ -f "$KAFKA_LIBS/.complete" ] && return
  command -v mvn >/dev/null || { log "stack: installing Maven"; apt_install maven; }
  log "stack: fetching Kafka jars from Maven Central into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS"; mkdir -p "$KAFKA_LIBS"
  mvn -B -q -f "$HERE/kafka/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >&2
  touch "$KAFKA_LIBS/.complete"
}

ensure_postgres_binaries() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/postgres" ]; then
    log "stack: installing PostgreSQL from Debian's packages"
    apt_install postgresql
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  fi
}

# FerretDB 1.24's SQLite backend looks documents up by `_ferretdb_sjson->'$._id'` while its
# unique _id index is on `_ferretdb_sjson->"_id"`: SQLite matches index expressions by text,
# so every lookup, update and delete by _id scans the whole collection (seconds per command
# once a collection holds ~100k documents). The build copies the module and makes the lookup
# use the index's expression (same value, same semantics).
build_ferretdb() { # output binary
  local work src meta
  work=$(mktemp -d)
  cp "$HERE/ferretdb/go.mod" "$HERE/ferretdb/go.sum" "$HERE/ferretdb/main.go" "$work/"
  src=$(cd "$work" && go mod download -json github.com/FerretDB/FerretDB | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || die "FerretDB module source not found"
  cp -r "$src" "$work/FerretDB" && chmod -R u+w "$work/FerretDB"
  meta="$work/FerretDB/internal/backends/sqlite/metadata/metadata.go"
  sed -i "s|IDColumn = DefaultColumn + \"->'\$\._id'\"|IDColumn = DefaultColumn + \"->'_id'\"|" "$meta"
  grep -q "IDColumn = DefaultColumn + \"->'_id'\"" "$meta" || die "FerretDB _id index patch did not apply"
  (cd "$work" && go mod edit -replace github.com/FerretDB/FerretDB=./FerretDB && go build -o "$1" .)
  local rc=$?
  rm -rf "$work"
  return $rc
}

ensure_ferretdb() {
  local stamp
  stamp=$( (cat "$HERE/ferretdb/go.mod" "$HERE/ferretdb/go.sum" "$HERE/ferretdb/main.go"; declare -f build_ferretdb) | sha256sum | cut -c1-16)
  [ -x "$FERRET_BIN" ] && [ "$(cat "$FERRET_BIN.stamp" 2>/dev/null)" = "$stamp" ] && return
  command -v go >/dev/null || die "Go is needed to build FerretDB (apt-get install golang, or the machine's Go)"
  log "stack: building FerretDB (first build compiles SQLite in Go: a few minutes)"
  mkdir -p "$(dirname "$FERRET_BIN")"
  build_ferretdb "$FERRET_BIN.tmp" >&2
  mv "$FERRET_BIN.tmp" "$FERRET_BIN"
  echo "$stamp" > "$FERRET_BIN.stamp"
}

# Apicurio 3.x is built for Java 21+; Kafka runs on the machine's default Java (17+).
java_at_least() { # major -> prints the path of a java binary of at least that major version
  local want=$1 candidate major
  for candidate in "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    major=$("$candidate" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | cut -d. -f1)
    if [ -n "$major" ] && [ "$major" -ge "$want" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

ensure_java21() {
  REGISTRY_JAVA=$(java_at_least 21) && return
  log "stack: installing a Java 21+ runtime for the schema registry"
  apt_install openjdk-21-jre-headless || apt_install openjdk-25-jre-headless || true
  REGISTRY_JAVA=$(java_at_least 21) || die "the schema registry needs Java 21 or newer and none could be installed"
}

ensure_apicurio() {
  [ -f "$APICURIO_DIR/.complete" ] && return
  command -v mvn >/dev/null || apt_install maven
  log "stack: fetching Apicurio Registry $APICURIO_VERSION from Maven Central"
  local dl="$CACHE/downloads"; mkdir -p "$dl"
  mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
    -DoutputDirectory="$dl" >&2
  rm -rf "$APICURIO_DIR"; mkdir -p "$APICURIO_DIR"
  tar -xzf "$dl/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz" -C "$APICURIO_DIR"
  touch "$APICURIO_DIR/.complete"
}

# ---------------------------------------------------------------- kafka
# A CA, a broker certificate for 127.0.0.1/localhost signed by it (PKCS#12 keystore for the
# broker) and the SCRAM user's password, made once and kept in $STACK/kafka/tls (remade when
# missing or when the broker certificate expires within 30 days).
ensure_kafka_tls() {
  local tls="$STACK/kafka/tls"
  if [ -f "$tls/ca.crt" ] && [ -f "$tls/broker.p12" ] && [ -f "$tls/keystore.password" ] \
     && [ -f "$tls/$KAFKA_SCRAM_USER.password" ] && openssl x509 -checkend 2592000 -noout -in "$tls/broker.crt" >/dev/null 2>&1; then
    return
  fi
  command -v openssl >/dev/null || { log "stack: installing openssl"; apt_install openssl; }
  log "stack: making the local CA and the Kafka broker certificate in $tls"
  rm -rf "$tls"; mkdir -p "$tls"; chmod 700 "$tls"
  local ext="$tls/broker.ext"
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" > "$ext"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=syncflow local stack CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$tls/ca.key" -out "$tls/ca.crt"
    openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" -keyout "$tls/broker.key" -out "$tls/broker.csr"
    openssl x509 -req -sha256 -days 825 -in "$tls/broker.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
      -CAcreateserial -extfile "$ext" -out "$tls/broker.crt"
    head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$tls/keystore.password"
    openssl pkcs12 -export -name broker -in "$tls/broker.crt" -inkey "$tls/broker.key" -certfile "$tls/ca.crt" \
      -passout "file:$tls/keystore.password" -out "$tls/broker.p12"
    head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$tls/$KAFKA_SCRAM_USER.password"
  } >"$tls/openssl.log" 2>&1 || { cat "$tls/openssl.log" >&2; die "could not make the Kafka TLS files"; }
  chmod 600 "$tls"/*.key "$tls"/*.password "$tls/broker.p12"
  chmod 644 "$tls/ca.crt"
}

# The SCRAM-SHA-512 credential of the stack's user, set through the plaintext listener with
# Kafka's ConfigCommand (kafka-configs); idempotent.
ensure_kafka_scram_user() {
  local dir="$STACK/kafka" tls="$STACK/kafka/tls"
  check_kafka_secure >/dev/null 2>&1 && return
  java -Xmx256m "-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "$KAFKA_LIBS/*" kafka.admin.ConfigCommand \
    --bootstrap-server "127.0.0.1:$KAFKA_PORT" --alter --entity-type users --entity-name "$KAFKA_SCRAM_USER" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$(cat "$tls/$KAFKA_SCRAM_USER.password")]" >>"$dir/stdout.log" 2>&1 \
    || fail_service "kafka (SCRAM user)" "$dir/stdout.log"
  wait_for "kafka (SASL_SSL listener)" "$dir/kafka.log" 30 check_kafka_secure
}

start_kafka() {
  local dir="$STACK/kafka"; mkdir -p "$dir/data"
  cat > "$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$dir/tls/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$(cat "$dir/tls/keystore.password")
listener.name.sasl_ssl.ssl.key.password=$(cat "$dir/tls/keystore.password")
log.dirs=$dir/data
num.partitions=4
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
auto.create.topics.enable=false
delete.topic.enable=true
log.retention.hours=168
EOF
  cat > "$dir/log4j2.properties" <<EOF
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/kafka.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka.server.KafkaServer
logger.kafka.level = INFO
EOF
  local java_opts=(-Xms256m -Xmx768m -XX:+UseG1GC "-Dlog4j2.configurationFile=$dir/log4j2.properties")
  if [ ! -f "$dir/data/meta.properties" ]; then
    local id
    id=$(java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>>"$dir/stdout.log")
    java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" >>"$dir/stdout.log" 2>&1 \
      || fail_service kafka "$dir/stdout.log"
  fi
  nohup java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" >>"$dir/stdout.log" 2>&1 &
  echo $! > "$dir/pid"
  wait_for kafka "$dir/kafka.log" 90 check_kafka
  ensure_kafka_scram_user
}

# ---------------------------------------------------------------- postgres
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# A server certificate for 127.0.0.1/localhost signed by the stack's CA (the one Kafka's
# listener uses), so clients can connect with sslmode=verify-full; plaintext stays allowed.
ensure_postgres_tls() {
  local tls="$STACK/postgres/tls" ca="$STACK/kafka/tls"
  ensure_kafka_tls
  if [ -f "$tls/server.crt" ] && [ -f "$tls/server.key" ] && cmp -s "$ca/ca.crt" "$tls/ca.crt" \
     && openssl x509 -checkend 2592000 -noout -in "$tls/server.crt" >/dev/null 2>&1; then
    return
  fi
  rm -rf "$tls"; mkdir -p "$tls"
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" > "$tls/server.ext"
  {
    openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" -keyout "$tls/server.key" -out "$tls/server.csr"
    openssl x509 -req -sha256 -days 825 -in "$tls/server.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" \
      -CAcreateserial -CAserial "$tls/ca.srl" -extfile "$tls/server.ext" -out "$tls/server.crt"
  } >"$tls/openssl.log" 2>&1 || { cat "$tls/openssl.log" >&2; die "could not make the PostgreSQL TLS files"; }
  cp "$ca/ca.crt" "$tls/ca.crt"
  chmod 600 "$tls/server.key"; chmod 644 "$tls/server.crt" "$tls/ca.crt"
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$tls"; fi
}

# ssl=on with the stack's certificate, in a file of its own that postgresql.conf includes (a
# data directory made before TLS gets it too; a reload is enough for PostgreSQL to take it).
postgres_tls_conf() {
  local dir="$STACK/postgres"
  printf '%s\n' "ssl = on" "ssl_cert_file = '$dir/tls/server.crt'" "ssl_key_file = '$dir/tls/server.key'" \
    > "$dir/data/syncflow_tls.conf"
  grep -q "^include_if_exists = 'syncflow_tls.conf'" "$dir/data/postgresql.conf" \
    || echo "include_if_exists = 'syncflow_tls.conf'" >> "$dir/data/postgresql.conf"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/data/syncflow_tls.conf"; fi
}

start_postgres() {
  local dir="$STACK/postgres"; mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  ensure_postgres_tls
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
      || fail_service postgres "$dir/initdb.log"
    cat >> "$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 256MB
fsync = off
full_page_writes = off
EOF
  fi
  postgres_tls_conf
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null 2>&1 \
    || fail_service postgres "$dir/postgres.log"
  echo "$(head -n1 "$dir/data/postmaster.pid")" > "$dir/pid"
  wait_for postgres "$dir/postgres.log" 30 check_postgres_server
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_roles WHERE rolname='syncflow'" | grep -q 1 || \
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc \
      "CREATE ROLE syncflow LOGIN SUPERUSER PASSWORD 'syncflow'" >/dev/null
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='syncflow'" | grep -q 1 || \
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "CREATE DATABASE syncflow OWNER syncflow" >/dev/null
  wait_for postgres "$dir/postgres.log" 30 check_postgres
}

stop_postgres() {
  local dir="$STACK/postgres"
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -f "$dir/pid"
}

# ---------------------------------------------------------------- mongo (FerretDB)
start_mongo() {
  local dir="$STACK/mongo"; mkdir -p "$dir/data"
  nohup "$HERE/ferretdb/supervise.sh" "$FERRET_BIN" "127.0.0.1:$MONGO_PORT" "$dir/data/" >>"$dir/ferretdb.log" 2>&1 &
  echo $! > "$dir/pid"
  wait_for mongo "$dir/ferretdb.log" 30 check_mongo
}

# ---------------------------------------------------------------- registry (Apicurio)
start_registry() {
  local dir="$STACK/registry"; mkdir -p "$dir"
  local jar
  jar=$(find "$APICURIO_DIR" -name quarkus-run.jar | head -n1)
  [ -n "$jar" ] || die "quarkus-run.jar not found under $APICURIO_DIR"
  nohup "$REGISTRY_JAVA" -Xms128m -Xmx512m -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port=$((REGISTRY_PORT + 1000)) -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
    -jar "$jar" >>"$dir/registry.log" 2>&1 &
  echo $! > "$dir/pid"
  wait_for registry "$dir/registry.log" 120 check_registry
}

# ---------------------------------------------------------------- generic
stop_pidfile() { # service
  local pidf="$STACK/$1/pid"
  if pid_alive "$pidf"; then
    local pid; pid=$(cat "$pidf")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidf"
}

is_up() { # service
  case $1 in
    kafka) check_kafka ;;
    postgres) check_postgres ;;
    mongo) check_mongo ;;
    registry) check_registry ;;
  esac
}

start_one() { # service
  case $1 in
    kafka) ensure_java; ensure_kafka_libs; ensure_kafka_tls; start_kafka ;;
    postgres) ensure_postgres_binaries; start_postgres ;;
    mongo) ensure_ferretdb; start_mongo ;;
    registry) ensure_java21; ensure_apicurio; start_registry ;;
    *) die "unknown service '$1' (kafka|postgres|mongo|registry)" ;;
  esac
}

stop_one() {
  case $1 in
    postgres) ensure_postgres_binaries; stop_postgres ;;
    kafka|mongo|registry) stop_pidfile "$1" ;;
    *) die "unknown service '$1'" ;;
  esac
}

up_one() { # service: start only when it does not answer
  if is_up "$1" >/dev/null 2>&1; then
    if [ "$1" = kafka ]; then kafka_secure_or_restart; fi
    if [ "$1" = postgres ]; then postgres_secure_or_reload; fi
    return
  fi
  # A process that is alive but not answering is given a moment, then replaced.
  if pid_alive "$STACK/$1/pid"; then
    if wait_for_quiet "$1"; then return; fi
    stop_one "$1"
  fi
  log "stack: starting $1"
  start_one "$1"
}

kafka_secure_or_restart() { # a running broker: add the SCRAM user, or restart one started without SASL_SSL
  check_kafka_secure >/dev/null 2>&1 && return
  if [ -f "$STACK/kafka/tls/broker.p12" ] && grep -q "^listeners=.*SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT" "$STACK/kafka/server.properties" 2>/dev/null; then
    ensure_kafka_libs; ensure_kafka_scram_user
  else
    log "stack: restarting kafka to add its SASL_SSL listener"
    stop_one kafka; start_one kafka
  fi
}

postgres_secure_or_reload() { # a running server started before TLS: give it the certificate
  [ "$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc 'SHOW ssl' 2>/dev/null)" = on ] && return
  ensure_postgres_binaries; ensure_postgres_tls; postgres_tls_conf
  log "stack: reloading postgres to turn TLS on"
  as_pg "$PG_BIN/pg_ctl" -D "$STACK/postgres/data" reload >/dev/null
  sleep 1
}

wait_for_quiet() { # service: up to 20 s for a live process to answer
  local deadline=$((SECONDS + 20))
  until is_up "$1" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.5
  done
}

write_env() {
  local registry_line="# SYNCFLOW_SCHEMA_REGISTRY_URL is unset: the embedded single-object encoding is used"
  if [ -f "$STACK/registry/pid" ] && pid_alive "$STACK/registry/pid"; then
    registry_line="SYNCFLOW_LOCAL_SCHEMA_REGISTRY_URL=http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"
  fi
  local secure_lines="# the SASL_SSL listener does not answer: SYNCFLOW_LOCAL_KAFKA_SASL_SSL_* unset"
  if check_kafka_secure >/dev/null 2>&1; then
    secure_lines="# Kafka's SASL_SSL listener (SCRAM-SHA-512), for tests: Settings does not read these names
SYNCFLOW_LOCAL_KAFKA_SASL_SSL_BOOTSTRAP=127.0.0.1:$KAFKA_SASL_SSL_PORT
SYNCFLOW_LOCAL_KAFKA_SASL_SSL_MECHANISM=SCRAM-SHA-512
SYNCFLOW_LOCAL_KAFKA_SASL_SSL_CA_FILE=$STACK/kafka/tls/ca.crt
SYNCFLOW_LOCAL_KAFKA_SASL_SSL_USERNAME=$KAFKA_SCRAM_USER
SYNCFLOW_LOCAL_KAFKA_SASL_SSL_PASSWORD_FILE=$STACK/kafka/tls/$KAFKA_SCRAM_USER.password"
  fi
  if [ -f "$STACK/postgres/tls/ca.crt" ]; then
    secure_lines="$secure_lines
SYNCFLOW_LOCAL_POSTGRES_CA_FILE=$STACK/postgres/tls/ca.crt"
  fi
  cat > "$STACK/stack.env" <<EOF
# Written by deploy/local/stack.sh: where the local stack listens.
SYNCFLOW_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
SYNCFLOW_DATABASE_URL=postgresql+psycopg2://syncflow:syncflow@127.0.0.1:$PG_PORT/syncflow
SYNCFLOW_MONGO_URL=mongodb://127.0.0.1:$MONGO_PORT/
$registry_line
$secure_lines
EOF
}

services_for_up() {
  echo kafka postgres mongo
  [ "${WITH_REGISTRY:-}" = 1 ] && echo registry
  true
}

cmd=${1:-}; shift || true
mkdir -p "$STACK" "$CACHE"
case $cmd in
  up)
    [ "${1:-}" = "--with-registry" ] && WITH_REGISTRY=1
    ensure_python
    for s in $(services_for_up); do up_one "$s"; done
    write_env
    printf 'kafka     127.0.0.1:%s   (logs %s)\n' "$KAFKA_PORT" "$STACK/kafka"
    printf 'kafka     127.0.0.1:%s   SASL_SSL, SCRAM-SHA-512 user %s, CA %s\n' "$KAFKA_SASL_SSL_PORT" "$KAFKA_SCRAM_USER" "$STACK/kafka/tls/ca.crt"
    printf 'postgres  127.0.0.1:%s   db/user/password syncflow (logs %s)\n' "$PG_PORT" "$STACK/postgres"
    printf 'mongo     127.0.0.1:%s  FerretDB/SQLite (logs %s)\n' "$MONGO_PORT" "$STACK/mongo"
    [ "${WITH_REGISTRY:-}" = 1 ] && printf 'registry  http://127.0.0.1:%s/apis/ccompat/v7 (logs %s)\n' "$REGISTRY_PORT" "$STACK/registry"
    printf 'settings  %s\n' "$STACK/stack.env"
    ;;
  status)
    ensure_python
    rc=0
    for s in kafka postgres mongo registry; do
      if is_up "$s" >/dev/null 2>&1; then echo "$s up"
      elif [ "$s" = registry ]; then echo "$s down (optional)"
      else echo "$s down"; rc=1; fi
    done
    exit $rc
    ;;
  down)
    for s in registry mongo kafka postgres; do stop_one "$s"; done
    echo "stack stopped"
    ;;
  stop) stop_one "${1:?service}" ;;
  restart) stop_one "${1:?service}"; ensure_python; start_one "$1"; write_env ;;
  env) cat "$STACK/stack.env" ;;
  dir) echo "$STACK" ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
