#!/usr/bin/env bash
# Local infrastructure for Conveyor: RabbitMQ and a MongoDB-wire server.
#
#   scripts/infra.sh up|down|status
#
# Idempotent. Installs what is missing (Debian's rabbitmq-server, FerretDB v1
# built from the Go module proxy), starts what is not running, and waits until
# both answer. Preference order for the database: $CONVEYOR_MONGODB_URL (used
# as-is, nothing started), a real `mongod` on PATH, then FerretDB v1 on its
# PostgreSQL backend (Debian's PostgreSQL; FERRETDB_BACKEND=sqlite selects the
# SQLite backend, which is far slower under concurrent writes - see README). With a working Docker engine, `up` runs `docker compose up -d` for
# rabbitmq and mongo instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CONVEYOR_STATE_DIR:-$ROOT/.infra}"
FERRETDB_VERSION="${FERRETDB_VERSION:-v1.24.2}"
FERRETDB_BIN="$STATE/bin/ferretdb"
MONGO_PORT=27017
FERRETDB_BACKEND="${FERRETDB_BACKEND:-postgresql}"
PG_DB=conveyor_ferretdb
PG_USER=conveyor_ferretdb
PG_PASSWORD=conveyor_ferretdb
AMQP_PORT=5672

log() { printf '[infra] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds what
  local i
  for ((i = 0; i < $2 * 4; i++)); do
    port_open "$1" && return 0
    sleep 0.25
  done
  die "$3 did not listen on 127.0.0.1:$1 within $2 s"
}

docker_engine() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# Packages whose Debian scripts would start a system service (prometheus):
# policy-rc.d tells invoke-rc.d not to; tests run their own instances.
apt_install_no_start() {
  local policy=/usr/sbin/policy-rc.d created=""
  local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    created=1
  fi
  apt_install "$@"
  [[ -z $created ]] || $sudo rm -f "$policy"
}

# ------------------------------------------------------------- Prometheus
# promtool checks configs, rules and expositions; the server runs in one test.
prometheus_tools() {
  command -v promtool >/dev/null || apt_install_no_start prometheus
}

# ---------------------------------------------------------------- RabbitMQ
rabbit_running() { rabbitmqctl -q status >/dev/null 2>&1 && port_open "$AMQP_PORT"; }

rabbit_up() {
  if port_open "$AMQP_PORT"; then log "rabbitmq: already listening on $AMQP_PORT"; return 0; fi
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  rabbitmq-plugins --offline enable rabbitmq_management rabbitmq_prometheus >/dev/null
  log "rabbitmq: starting"
  rabbitmq-server -detached
  rabbitmqctl -q await_startup --timeout 120 >/dev/null 2>&1 || true
  wait_port "$AMQP_PORT" 120 rabbitmq
  log "rabbitmq: up (management on :15672, prometheus on :15692)"
}

rabbit_down() {
  if rabbit_running; then log "rabbitmq: stopping"; rabbitmqctl -q stop >/dev/null 2>&1 || true; fi
}

# ---------------------------------------------------------------- FerretDB
ferret_build() {
  if [[ -x "$FERRETDB_BIN" ]] && "$FERRETDB_BIN" --version 2>/dev/null | grep -q "$FERRETDB_VERSION"; then
    return 0
  fi
  command -v go >/dev/null || die "Go is needed to build FerretDB (go install from the module proxy)"
  log "ferretdb: building $FERRETDB_VERSION from the Go module proxy (first time: ~2 min)"
  local dir src
  dir="$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$dir" && -d "$dir" ]] || die "go mod download of FerretDB $FERRETDB_VERSION failed"
  src="$STATE/src/ferretdb-$FERRETDB_VERSION"
  rm -rf "$src"; mkdir -p "$src" "$STATE/bin"
  cp -r "$dir/." "$src/"; chmod -R u+w "$src"
  # The module zip lacks the generated version file that a release build embeds.
  echo "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  (cd "$src" && go build -trimpath -o "$FERRETDB_BIN" ./cmd/ferretdb)
  rm -rf "$src"
}

# ---------------------------------------------------------------- PostgreSQL (FerretDB backend)
pg_up() {
  command -v pg_lsclusters >/dev/null || apt_install postgresql
  local ver cluster
  ver="$(ls /usr/lib/postgresql | sort -n | tail -1)"
  cluster="$(pg_lsclusters -h | awk -v v="$ver" '$1 == v {print $2; exit}')"
  if [[ -z "$cluster" ]]; then
    log "postgresql: creating cluster $ver/main"
    pg_createcluster "$ver" main >/dev/null
    cluster=main
  fi
  if ! pg_lsclusters -h | awk -v v="$ver" -v c="$cluster" '$1 == v && $2 == c' | grep -q online; then
    log "postgresql: starting cluster $ver/$cluster"
    pg_ctlcluster "$ver" "$cluster" start
  fi
  local i
  for ((i = 0; i < 120; i++)); do
    su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
    sleep 0.5
  done
  PG_PORT="$(pg_lsclusters -h | awk -v v="$ver" -v c="$cluster" '$1 == v && $2 == c {print $3}')"
  su postgres -c "psql -qAt" >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SQL
  if ! su postgres -c "psql -qAtc \"SELECT 1 FROM pg_database WHERE datname = '$PG_DB'\"" | grep -q 1; then
    su postgres -c "createdb -O $PG_USER $PG_DB"
  fi
}

ferret_pid() { cat "$STATE/ferretdb.pid" 2>/dev/null || true; }

ferret_up() {
  if port_open "$MONGO_PORT"; then log "mongodb: already listening on $MONGO_PORT"; return 0; fi
  mkdir -p "$STATE/ferretdb/data"
  if command -v mongod >/dev/null; then
    log "mongodb: starting the real mongod found on PATH"
    mkdir -p "$STATE/mongod"
    mongod --bind_ip 127.0.0.1 --port "$MONGO_PORT" --dbpath "$STATE/mongod" \
      --fork --logpath "$STATE/mongod.log" >/dev/null
  else
    ferret_build
    local backend=(--handler=sqlite --sqlite-url="file:$STATE/ferretdb/data/")
    if [[ "$FERRETDB_BACKEND" == postgresql ]]; then
      pg_up
      backend=(--handler=postgresql
        --postgresql-url="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB")
    fi
    log "ferretdb: starting ($FERRETDB_BACKEND backend)"
    nohup "$FERRETDB_BIN" "${backend[@]}" \
      --state-dir="$STATE/ferretdb" --listen-addr="127.0.0.1:$MONGO_PORT" \
      --debug-addr=127.0.0.1:8089 --telemetry=disable --log-level=WARN \
      >>"$STATE/ferretdb.log" 2>&1 </dev/null &
    echo $! >"$STATE/ferretdb.pid"
  fi
  wait_port "$MONGO_PORT" 60 mongodb
  log "mongodb: up on 127.0.0.1:$MONGO_PORT"
}

ferret_down() {
  local pid; pid="$(ferret_pid)"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    log "ferretdb: stopping"; kill "$pid"; rm -f "$STATE/ferretdb.pid"
  fi
  if command -v mongod >/dev/null && [[ -d "$STATE/mongod" ]]; then
    mongod --dbpath "$STATE/mongod" --shutdown >/dev/null 2>&1 || true
  fi
}

# ---------------------------------------------------------------- commands
cmd="${1:-status}"
mkdir -p "$STATE"
case "$cmd" in
  up)
    prometheus_tools
    if docker_engine; then
      log "docker engine found: docker compose up -d rabbitmq mongo"
      docker compose -f "$ROOT/docker-compose.yml" up -d --wait rabbitmq mongo
      exit 0
    fi
    rabbit_up
    if [[ -n "${CONVEYOR_MONGODB_URL:-}" ]]; then
      log "mongodb: using CONVEYOR_MONGODB_URL as given"
    else
      ferret_up
    fi
    ;;
  down)
    if docker_engine; then docker compose -f "$ROOT/docker-compose.yml" stop rabbitmq mongo; exit 0; fi
    ferret_down
    rabbit_down
    ;;
  status)
    rc=0
    if port_open "$AMQP_PORT"; then echo "rabbitmq: up"; else echo "rabbitmq: down"; rc=1; fi
    if port_open "$MONGO_PORT"; then echo "mongodb: up"; else echo "mongodb: down"; rc=1; fi
    exit $rc
    ;;
  build)
    ferret_build
    ;;
  tools)
    prometheus_tools
    ;;
  *) die "usage: $0 up|down|status|build|tools" ;;
esac
