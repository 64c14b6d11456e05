# Sourced by scripts/test.sh and scripts/bench.sh: sets CONFAB_TEST_DATABASE_URL
# and CONFAB_TEST_REDIS_URL, to the PostgreSQL on 127.0.0.1:5432 and the Redis on
# 127.0.0.1:6379 when they answer, else to private ones started in a temporary
# folder (stopped and removed when the sourcing script exits).
# Under /tmp, not the checkout: as root, PostgreSQL runs as the postgres user,
# who may not be able to enter the checkout's parent folders. In /dev/shm
# (memory) when it has room: every test clones two databases and drops them,
# and on ext4 the hundreds of files created and deleted per clone send the
# kernel's inode allocator scanning (measured under the repeated suite: 35 %
# of all CPU time was PostgreSQL in ext4's inode search, and runs took twice
# as long). A throwaway test database loses nothing by living in memory.
base=/tmp
if [ -d /dev/shm ] && [ -w /dev/shm ] &&
  [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')" -gt 2000000 ] 2>/dev/null; then
  base=/dev/shm
fi
infra=$(mktemp -d "$base/confab-test-infra.XXXXXX")
chmod 755 "$infra"
cleanup() {
  if [ -f "$infra/pg/postmaster.pid" ]; then
    pg_run pg_ctl stop -D "$infra/pg" -m fast -w >/dev/null 2>&1 || true
  fi
  if [ -f "$infra/redis.pid" ]; then
    rpid=$(cat "$infra/redis.pid")
    kill "$rpid" 2>/dev/null || true
    # Until it has exited: it writes its log to the folder while stopping
    # (the folder may be in memory, so it must not be left behind).
    for _ in $(seq 1 50); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$infra"
}
trap cleanup EXIT

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
pg_run() { # PostgreSQL refuses to run as root: use the postgres user then.
  local tool=$1; shift
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$pgbin/$tool" "$@"; else "$pgbin/$tool" "$@"; fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }

if [ -z "${CONFAB_TEST_DATABASE_URL:-}" ]; then
  if psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc 'select 1' >/dev/null 2>&1; then
    export CONFAB_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
  else
    echo "no PostgreSQL on 127.0.0.1:5432; starting a private one" >&2
    mkdir -p "$infra"
    rm -rf "$infra/pg"; mkdir -p "$infra/pg"
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$infra/pg"; fi
    pg_run initdb -D "$infra/pg" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
    port=$(free_port)
    pg_run pg_ctl start -D "$infra/pg" -l "$infra/pg/server.log" -w \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$infra/pg -c fsync=off -c max_connections=300" >/dev/null
    export CONFAB_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  fi
fi
if [ -z "${CONFAB_TEST_REDIS_URL:-}" ]; then
  if [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; then
    export CONFAB_TEST_REDIS_URL="redis://127.0.0.1:6379"
  else
    echo "no Redis on 127.0.0.1:6379; starting a private one" >&2
    mkdir -p "$infra"
    port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize yes \
      --pidfile "$infra/redis.pid" --logfile "$infra/redis.log" --dir "$infra"
    for _ in $(seq 1 100); do [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ] && break; sleep 0.1; done
    export CONFAB_TEST_REDIS_URL="redis://127.0.0.1:$port"
  fi
fi
echo "PostgreSQL: $CONFAB_TEST_DATABASE_URL  Redis: $CONFAB_TEST_REDIS_URL" >&2

