#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL server for the tests, on loopback only.
#
#   scripts/pg-test-server.sh start   # prints the server's URL on stdout, nothing else
#   scripts/pg-test-server.sh stop    # stops it and deletes its files
#   scripts/pg-test-server.sh url     # prints the URL of a running one
#
# The cluster lives in PG_TEST_DIR (default /tmp/changegate-pg-test) and listens on
# 127.0.0.1:PG_TEST_PORT (default 54329) with trust authentication: it holds test data only.
# It runs with fsync off, since a crash only loses data the tests throw away anyway.
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user
# (created by Debian's package), and the package is installed with apt-get if initdb is
# missing.
set -euo pipefail

dir=${PG_TEST_DIR:-/tmp/changegate-pg-test}
port=${PG_TEST_PORT:-54329}
url="postgres://postgres@127.0.0.1:${port}/postgres"

log() { echo "pg-test-server: $*" >&2; }

find_bin() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$found" && -x "$found/initdb" ]]; then
        echo "$found"
        return
    fi
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

bin=$(find_bin)
if [[ -z "$bin" && "${1:-}" == start ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        log "initdb not found; install PostgreSQL (apt-get install postgresql)"
        exit 1
    fi
    log "initdb not found; installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    bin=$(find_bin)
    if [[ -z "$bin" ]]; then
        log "initdb still not found after installing postgresql"
        exit 1
    fi
fi

# Runs a PostgreSQL program as a user it accepts.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        if ! id postgres >/dev/null 2>&1; then
            useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin postgres
        fi
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

running() {
    [[ -n "$bin" && -f "$dir/data/postmaster.pid" ]] && as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

case "${1:-}" in
start)
    if running; then
        log "already running in $dir"
        echo "$url"
        exit 0
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then
        as_pg true  # creates the user if needed
        chown postgres: "$dir"
    fi
    chmod 700 "$dir"
    as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }
    # The socket goes into the cluster's own directory: /var/run/postgresql may not exist.
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
        start >&2 || {
        cat "$dir/server.log" >&2
        exit 1
    }
    echo "$url"
    ;;
stop)
    if running; then
        as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2
    fi
    rm -rf "$dir"
    ;;
url)
    if running; then
        echo "$url"
    else
        log "not running"
        exit 1
    fi
    ;;
*)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
