# shellcheck shell=bash
# Sourced by scripts/test.sh: makes a throw-away local PostgreSQL server available to the tests and
# exports RLLI_TEST_POSTGRES_URL (a superuser URL; the tests create one database per test in it).
#
#   source scripts/postgres.sh
#
# Uses Debian's PostgreSQL (apt-get install postgresql when root and missing). The server runs as the
# `postgres` user (or the current user when not root) on a temporary data folder, a free TCP port on
# 127.0.0.1 and a unix socket in that folder; it stops, and the folder is removed, when the shell that
# sourced this file exits (a watcher waits for that process; `exec pytest` keeps the same process).
# If no server can be had, a LOUD reason is printed, the variable stays unset, and the PostgreSQL
# variants of the store tests skip with that reason while everything else runs.

_rlli_pg_fail() {
  echo "" >&2
  echo "[postgres] !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
  echo "[postgres] NO LOCAL POSTGRESQL: $1" >&2
  echo "[postgres] The PostgreSQL variants of the store tests will be SKIPPED." >&2
  echo "[postgres] !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
  echo "" >&2
  export RLLI_TEST_POSTGRES_SKIP_REASON="$1"
  unset RLLI_TEST_POSTGRES_URL
}

_rlli_pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return; fi
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/pg_ctl" ]; then pg_config --bindir; fi
}

_rlli_pg_start() {
  local bindir dir port runas=() url
  bindir=$(_rlli_pg_bindir)
  if [ -z "$bindir" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "[postgres] installing Debian's postgresql (apt-get)"
      if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }; then
        _rlli_pg_fail "apt-get install postgresql failed (no package mirror reachable?)"; return
      fi
      bindir=$(_rlli_pg_bindir)
    fi
    if [ -z "$bindir" ]; then
      _rlli_pg_fail "PostgreSQL's server programs are not installed and cannot be installed here (needs root and apt-get: apt-get install postgresql)"
      return
    fi
  fi
  dir=$(mktemp -d /tmp/rlli-postgres.XXXXXX)
  if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
      _rlli_pg_fail "running as root but there is no 'postgres' user to run the server as"; rm -rf "$dir"; return
    fi
    chown postgres "$dir"
    runas=(runuser -u postgres --)
  fi
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' || true)
  if [ -z "$port" ]; then
    _rlli_pg_fail "could not find a free TCP port on 127.0.0.1"; rm -rf "$dir"; return
  fi
  if ! "${runas[@]}" "$bindir/initdb" -D "$dir/data" -U rlli -A trust -E UTF8 --locale=C.UTF-8 --no-sync \
      >"$dir/initdb.log" 2>&1; then
    _rlli_pg_fail "initdb failed: $(tail -n 3 "$dir/initdb.log" | tr '\n' ' ')"; rm -rf "$dir"; return
  fi
  if ! "${runas[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null 2>&1; then
    _rlli_pg_fail "the server did not start: $(tail -n 3 "$dir/server.log" | tr '\n' ' ')"; rm -rf "$dir"; return
  fi
  url="postgresql+psycopg://rlli@127.0.0.1:$port/postgres"
  export RLLI_TEST_POSTGRES_URL="$url"
  unset RLLI_TEST_POSTGRES_SKIP_REASON
  echo "[postgres] PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') for the tests at $url (data $dir)"
  # stop the server and remove its folder when the process that sourced this file ends (with `exec pytest`,
  # when pytest ends); BASHPID, not $$, so that sourcing inside a subshell watches that subshell
  local owner=${BASHPID:-$$}
  ( trap '' HUP INT
    while kill -0 "$owner" 2>/dev/null; do sleep 2; done
    "${runas[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$dir" ) </dev/null >/dev/null 2>&1 &
  disown 2>/dev/null || true
}

if [ -n "${RLLI_TEST_POSTGRES_URL:-}" ]; then
  echo "[postgres] using the given RLLI_TEST_POSTGRES_URL"
else
  _rlli_pg_start
fi
unset -f _rlli_pg_fail _rlli_pg_bindir _rlli_pg_start
