#!/usr/bin/env bash
# A throwaway PostgreSQL for the distributed-sweep tests (Debian's postgresql package).
#
#   .ci/postgres.sh install                 install the package when no initdb is found
#   .ci/postgres.sh start PORT PASSWORD     new cluster on 127.0.0.1:PORT with databases optuna
#                                           and mlflow (user postgres); prints its directory
#   .ci/postgres.sh restart DIR             restart it (every connection cut), same port and data
#   .ci/postgres.sh stop DIR                stop that cluster and delete DIR
#
# Exit 3: PostgreSQL is not installed and cannot be installed here (no root, no apt-get).
set -euo pipefail

bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$dir" ] && command -v initdb >/dev/null 2>&1; then
        dir=$(dirname "$(readlink -f "$(command -v initdb)")")
    fi
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && echo "$dir"
}

install() {
    if bindir >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "postgres.sh: PostgreSQL is not installed and installing it needs root and apt-get" \
             "(apt-get install postgresql)" >&2
        exit 3
    fi
    echo "postgres.sh: installing postgresql (apt-get)" >&2
    # Only the binaries are wanted: no system-wide cluster started on port 5432.
    mkdir -p /etc/postgresql-common
    [ -e /etc/postgresql-common/createcluster.conf ] \
        || echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        postgresql >&2
    bindir >/dev/null || { echo "postgres.sh: postgresql installed but no initdb found" >&2; exit 1; }
}

# Run as the cluster's owner: initdb and postgres refuse to run as root.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local port=$1 password=$2 bin dir
    install
    bin=$(bindir)
    dir=$(mktemp -d /tmp/pg-sweep-XXXXXX)
    chmod 755 "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" --shell /bin/sh postgres
        chown postgres "$dir"
    fi
    printf '%s\n' "$password" > "$dir/pwfile"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir/pwfile"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    rm -f "$dir/pwfile"
    # Loopback only; durability traded for speed (a test cluster).
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >&2 || { cat "$dir/server.log" >&2; exit 1; }
    for db in optuna mlflow; do
        as_owner "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
            -c "CREATE DATABASE $db" >&2
    done
    echo "$dir"
}

stop() {
    local dir=$1 bin
    case "$dir" in /tmp/pg-sweep-*) ;; *) echo "postgres.sh: not a test cluster: $dir" >&2; exit 2 ;; esac
    bin=$(bindir) || true
    if [ -n "$bin" ] && [ -d "$dir/data" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

restart() {
    local dir=$1 bin
    case "$dir" in /tmp/pg-sweep-*) ;; *) echo "postgres.sh: not a test cluster: $dir" >&2; exit 2 ;; esac
    bin=$(bindir)
    # Fast shutdown: every open connection is cut, as when a database server restarts.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 60 restart >&2
}

case "${1:-}" in
    install) install ;;
    restart) [ $# -eq 2 ] || { echo "usage: $0 restart DIR" >&2; exit 2; }; restart "$2" ;;
    start) [ $# -eq 3 ] || { echo "usage: $0 start PORT PASSWORD" >&2; exit 2; }; start "$2" "$3" ;;
    stop) [ $# -eq 2 ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
    *) echo "usage: $0 install | start PORT PASSWORD | restart DIR | stop DIR" >&2; exit 2 ;;
esac
