#!/usr/bin/env bash
# Local infrastructure for Conveyor: RabbitMQ and a MongoDB-wire server.
#
#   scripts/infra.sh up|down|status|check|heal|build|tools
#
# Idempotent. Installs what is missing (Debian's rabbitmq-server, FerretDB v1
# built from the Go module proxy), starts what is not running, and waits until
# both answer. Preference order for the database: $CONVEYOR_MONGODB_URL (used
# as-is, nothing started), a real `mongod` on PATH, then FerretDB v1 on its
# PostgreSQL backend (Debian's PostgreSQL; FERRETDB_BACKEND=sqlite selects the
# SQLite backend, which is far slower under concurrent writes - see README). With a working Docker engine, `up` runs `docker compose up -d` for
# rabbitmq and mongo instead.
#
# FerretDB v1 deadlocks once its PostgreSQL pool is exhausted (an update holds
# one pooled connection and asks for a second for its transaction; with the
# pool full, everything, `ping` included, hangs until FerretDB restarts). So:
#   * its pool is FERRETDB_POOL_MAX_CONNS (256) connections, twice the 128
#     concurrent operations that 8 processes with maxPoolSize 16 can send, and
#     PostgreSQL's max_connections is raised to PG_MAX_CONNECTIONS (300);
#   * `up` restarts a FerretDB that runs with other flags (an older infra.sh);
#   * `check` (alias `heal`) pings with a FERRETDB_PING_TIMEOUT_S (5 s)
#     deadline and restarts a FerretDB this script started if the ping times
#     out; `up` does the same for an already running FerretDB, and the
#     `make run` supervisor runs `heal` when its own ping times out.
#     FerretDB keeps no state of its own (PostgreSQL does): a restart loses nothing.
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
FERRETDB_POOL_MAX_CONNS="${FERRETDB_POOL_MAX_CONNS:-256}"
PG_MAX_CONNECTIONS="${PG_MAX_CONNECTIONS:-300}"
FERRETDB_PING_TIMEOUT_S="${FERRETDB_PING_TIMEOUT_S:-5}"
FERRETDB_PID_FILE="$STATE/ferretdb.pid"

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
# Above the longest job timeout (7 days); see deploy/rabbitmq/rabbitmq.conf.
RABBIT_CONSUMER_TIMEOUT_MS=691200000
rabbit_conf() {
  # Persisted for later broker starts, and applied to the running broker now.
  local conf=/etc/rabbitmq/rabbitmq.conf
  if ! grep -qs "^consumer_timeout = $RABBIT_CONSUMER_TIMEOUT_MS$" "$conf"; then
    sed -i '/^consumer_timeout/d' "$conf" 2>/dev/null || true
    echo "consumer_timeout = $RABBIT_CONSUMER_TIMEOUT_MS" >>"$conf"
  fi
  rabbitmqctl -q eval "application:set_env(rabbit, consumer_timeout, $RABBIT_CONSUMER_TIMEOUT_MS)." >/dev/null 2>&1 || true
}

rabbit_running() { rabbitmqctl -q status >/dev/null 2>&1 && port_open "$AMQP_PORT"; }

rabbit_up() {
  if port_open "$AMQP_PORT"; then
    log "rabbitmq: already listening on $AMQP_PORT"
    rabbit_conf
    return 0
  fi
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  mkdir -p /etc/rabbitmq
  rabbit_conf
  rabbitmq-plugins --offline enable rabbitmq_management rabbitmq_prometheus >/dev/null
  log "rabbitmq: starting"
  rabbitmq-server -detached
  rabbitmqctl -q await_startup --timeout 120 >/dev/null 2>&1 || true
  wait_port "$AMQP_PORT" 120 rabbitmq
  rabbit_conf
  log "rabbitmq: up (management on :15672, prometheus on :15692; consumer_timeout ${RABBIT_CONSUMER_TIMEOUT_MS} ms)"
}

rabbit_down() {
  if rabbit_running; then log "rabbitmq: stopping"; rabbitmqctl -q stop >/dev/null 2>&1 || true; fi
}

# ---------------------------------------------------------------- FerretDB
ferret_build() {
  # Not `--version | grep -q`: with pipefail, grep's early exit can SIGPIPE ferretdb
  # and fail the test, which rebuilt (and replaced) a perfectly good binary.
  if [[ -x "$FERRETDB_BIN" && "$("$FERRETDB_BIN" --version 2>/dev/null || true)" == *"version: $FERRETDB_VERSION"* ]]; then
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
PG_RESTARTED=""

pg_wait() {
  local i
  for ((i = 0; i < 120; i++)); do
    su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "postgresql did not accept connections within 60 s"
}

pg_up() {
  command -v pg_lsclusters >/dev/null || apt_install postgresql 9>&-
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
    pg_ctlcluster "$ver" "$cluster" start 9>&-
  fi
  pg_wait
  # FerretDB's pool plus headroom for psql and PostgreSQL's reserved slots.
  local max
  max="$(su postgres -c "psql -qAtc 'SHOW max_connections'")"
  if ((max < PG_MAX_CONNECTIONS)); then
    log "postgresql: max_connections $max -> $PG_MAX_CONNECTIONS (ALTER SYSTEM; restarting cluster $ver/$cluster)"
    su postgres -c "psql -qAtc 'ALTER SYSTEM SET max_connections = $PG_MAX_CONNECTIONS'" >/dev/null
    pg_ctlcluster "$ver" "$cluster" restart 9>&-
    pg_wait
    PG_RESTARTED=1
  fi
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
  # Indexed equality lookups (see scripts/ferretdb_indexes.sql). The role setting
  # reaches new connections only, so a running FerretDB restarts when it changes.
  su postgres -c "psql -qAt -v ON_ERROR_STOP=1 -d $PG_DB" <"$ROOT/scripts/ferretdb_indexes.sql" >/dev/null
  local mode
  mode="$(su postgres -c "psql -qAtc \"SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
    WHERE r.rolname = '$PG_USER' AND 'plan_cache_mode=force_custom_plan' = ANY (s.setconfig)\"")"
  if [[ "$mode" != 1 ]]; then
    su postgres -c "psql -qAtc 'ALTER ROLE $PG_USER SET plan_cache_mode = force_custom_plan'" >/dev/null
    log "postgresql: plan_cache_mode = force_custom_plan for $PG_USER (so the _id index is used)"
    PG_RESTARTED=1
  fi
}

# The FerretDB this script started: the pid in $FERRETDB_PID_FILE if that
# process is alive and runs $FERRETDB_BIN (a stale pid file is ignored).
ferret_pid() {
  local pid argv0
  pid="$(cat "$FERRETDB_PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  argv0="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 1p)"
  [[ "$argv0" == "$FERRETDB_BIN" ]] || return 1
  echo "$pid"
}

alive() { # pid; a zombie is not alive
  kill -0 "$1" 2>/dev/null || return 1
  [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

ping_python() {
  if [[ -x "$ROOT/.venv/bin/python" ]]; then echo "$ROOT/.venv/bin/python"
  elif command -v python3 >/dev/null; then echo python3
  else die "python3 is needed for the MongoDB ping (scripts/mongo_ping.py)"; fi
}

# mongo_ping timeout_s: 0 ok, 1 timed out, 2 unreachable, 3 not ok; detail in PING_DETAIL
mongo_ping() {
  local rc=0
  PING_DETAIL="$("$(ping_python)" "$ROOT/scripts/mongo_ping.py" --port "$MONGO_PORT" \
    --timeout "$1")" || rc=$?
  PING_DETAIL="${PING_DETAIL#ping 127.0.0.1:$MONGO_PORT: }"
  return $rc
}

# Sets FERRET_ARGS (starting PostgreSQL if that is the backend).
ferret_prepare() {
  mkdir -p "$STATE/ferretdb/data"
  ferret_build
  local backend=(--handler=sqlite --sqlite-url="file:$STATE/ferretdb/data/")
  if [[ "$FERRETDB_BACKEND" == postgresql ]]; then
    ((PG_MAX_CONNECTIONS >= FERRETDB_POOL_MAX_CONNS + 10)) ||
      die "PG_MAX_CONNECTIONS ($PG_MAX_CONNECTIONS) must exceed FERRETDB_POOL_MAX_CONNS ($FERRETDB_POOL_MAX_CONNS) by 10 or more"
    pg_up
    backend=(--handler=postgresql
      --postgresql-url="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB?pool_max_conns=$FERRETDB_POOL_MAX_CONNS")
  fi
  FERRET_ARGS=("$FERRETDB_BIN" "${backend[@]}"
    --state-dir="$STATE/ferretdb" --listen-addr="127.0.0.1:$MONGO_PORT"
    --debug-addr=127.0.0.1:8089 --telemetry=disable --log-level=WARN)
}

# Whether pid runs exactly FERRET_ARGS, from the current binary.
ferret_flags_match() {
  [[ "$(readlink "/proc/$1/exe" 2>/dev/null)" != *" (deleted)" ]] || return 1
  [[ "$(tr '\0' '\n' <"/proc/$1/cmdline")" == "$(printf '%s\n' "${FERRET_ARGS[@]}")" ]]
}

wait_ping() { # seconds
  local deadline=$((SECONDS + $1))
  until mongo_ping "$FERRETDB_PING_TIMEOUT_S"; do
    ((SECONDS < deadline)) || die "ferretdb: no ping answer within $1 s ($PING_DETAIL); see $STATE/ferretdb.log"
    sleep 0.5
  done
}

ferret_start() {
  log "ferretdb: starting ($FERRETDB_BACKEND backend, pool_max_conns=$FERRETDB_POOL_MAX_CONNS)"
  # Own session: a Ctrl-C of `make run` or a supervisor's death does not take it along.
  setsid nohup "${FERRET_ARGS[@]}" >>"$STATE/ferretdb.log" 2>&1 </dev/null 9>&- &
  echo $! >"$FERRETDB_PID_FILE"
  wait_port "$MONGO_PORT" 60 ferretdb
  wait_ping 60
  log "mongodb: up on 127.0.0.1:$MONGO_PORT (ferretdb pid $(cat "$FERRETDB_PID_FILE"))"
}

ferret_stop() { # pid [signal]; a wedged one gets KILL right away (it holds no state)
  local pid="$1" sig="${2:-TERM}" i
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do alive "$pid" || break; sleep 0.25; done
  if alive "$pid"; then
    log "ferretdb: pid $pid did not stop on SIGTERM within 10 s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do alive "$pid" || break; sleep 0.25; done
    ! alive "$pid" || die "ferretdb: pid $pid does not exit"
  fi
  rm -f "$FERRETDB_PID_FILE"
  for ((i = 0; i < 40; i++)); do port_open "$MONGO_PORT" || return 0; sleep 0.25; done
  die "port $MONGO_PORT still open after stopping ferretdb pid $pid"
}

# Ping the running FerretDB (pid); restart it if it does not answer.
ferret_heal() {
  local pid="$1" rc=0 started=$SECONDS sig=TERM
  mongo_ping "$FERRETDB_PING_TIMEOUT_S" || rc=$?
  case $rc in
    0) log "ferretdb: ping $PING_DETAIL (pid $pid)"; return 0 ;;
    1)
      log "ferretdb: ping timed out after $FERRETDB_PING_TIMEOUT_S s; restarting (wedged PostgreSQL pool?)"
      # What the handlers were blocked on, for the record (see the notes on the wedge).
      curl -sf -m 3 "http://127.0.0.1:8089/debug/pprof/goroutine?debug=1" \
        >"$STATE/ferretdb-wedge.goroutines.txt" 2>/dev/null &&
        log "ferretdb: goroutine dump saved to $STATE/ferretdb-wedge.goroutines.txt" || true
      sig=KILL
      ;;
    2) log "ferretdb: pid $pid does not accept connections ($PING_DETAIL); restarting" ;;
    *) log "ferretdb: ping failed ($PING_DETAIL); restarting" ;;
  esac
  ferret_prepare
  ferret_stop "$pid" "$sig"
  ferret_start
  log "ferretdb: healed in $((SECONDS - started)) s"
}

ferret_lock() {
  exec 9>"$STATE/ferretdb.lock"
  flock -w 900 9 || die "another scripts/infra.sh held $STATE/ferretdb.lock for 15 min"
}

ferret_up() {
  ferret_lock
  if command -v mongod >/dev/null; then
    if port_open "$MONGO_PORT"; then log "mongodb: already listening on $MONGO_PORT"; return 0; fi
    log "mongodb: starting the real mongod found on PATH"
    mkdir -p "$STATE/mongod"
    mongod --bind_ip 127.0.0.1 --port "$MONGO_PORT" --dbpath "$STATE/mongod" \
      --fork --logpath "$STATE/mongod.log" >/dev/null 9>&-
    wait_port "$MONGO_PORT" 60 mongodb
    log "mongodb: up on 127.0.0.1:$MONGO_PORT"
    return 0
  fi
  local pid
  pid="$(ferret_pid)" || pid=""
  if [[ -z "$pid" ]] && port_open "$MONGO_PORT"; then
    log "mongodb: already listening on $MONGO_PORT (not a FerretDB this script started; left as it is)"
    return 0
  fi
  ferret_prepare
  if [[ -z "$pid" ]]; then ferret_start; return 0; fi
  if ! ferret_flags_match "$pid"; then
    log "ferretdb: pid $pid runs another binary or other flags than wanted (pool_max_conns=$FERRETDB_POOL_MAX_CONNS); restarting it"
  elif [[ -n "$PG_RESTARTED" ]]; then
    log "ferretdb: PostgreSQL was restarted; restarting ferretdb pid $pid"
  else
    ferret_heal "$pid"
    return 0
  fi
  ferret_stop "$pid"
  ferret_start
}

ferret_check() {
  ferret_lock
  local pid rc=0
  pid="$(ferret_pid)" || pid=""
  if [[ -n "$pid" ]]; then ferret_heal "$pid"; return 0; fi
  if [[ -e "$FERRETDB_PID_FILE" ]] && ! port_open "$MONGO_PORT" && ! command -v mongod >/dev/null; then
    log "ferretdb: the one this script started is gone; starting it again"
    ferret_prepare
    ferret_start
    return 0
  fi
  mongo_ping "$FERRETDB_PING_TIMEOUT_S" || rc=$?
  log "mongodb: not a FerretDB this script started, so not restarting it; ping: $PING_DETAIL"
  return $rc
}

ferret_down() {
  ferret_lock
  local pid
  if pid="$(ferret_pid)"; then log "ferretdb: stopping pid $pid"; ferret_stop "$pid"; fi
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
    if ! port_open "$MONGO_PORT"; then echo "mongodb: down"; rc=1
    elif mongo_ping "$FERRETDB_PING_TIMEOUT_S"; then echo "mongodb: up"
    else echo "mongodb: listening but not answering ($PING_DETAIL; scripts/infra.sh heal restarts a FerretDB it started)"; rc=1
    fi
    exit $rc
    ;;
  check | heal)
    if docker_engine || [[ -n "${CONVEYOR_MONGODB_URL:-}" ]]; then
      log "mongodb: not started by this script (docker or CONVEYOR_MONGODB_URL); nothing to check"
      exit 0
    fi
    ferret_check
    ;;
  build)
    ferret_build
    ;;
  tools)
    prometheus_tools
    ;;
  *) die "usage: $0 up|down|status|check|heal|build|tools" ;;
esac
