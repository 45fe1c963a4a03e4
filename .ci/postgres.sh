#!/usr/bin/env bash
# Starts a local PostgreSQL server for the es-postgres tests, idempotently.
#
# Usage (from the repository root):
#
#     eval "$(bash .ci/postgres.sh)"
#
# stdout carries exactly one line, `export ES_POSTGRES_URL=...`, so the caller can eval it;
# every progress message goes to stderr. Safe to run again: an installed package, a running
# cluster, an existing role or database are left as they are.
#
# Needs root or passwordless sudo (it installs packages and runs commands as `postgres`).
set -euo pipefail

ROLE=es
PASSWORD=es
DATABASE=es

log() { echo "postgres.sh: $*" >&2; }

# Root runs commands directly; anyone else needs passwordless sudo (as on GitHub runners).
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    log "must run as root or with passwordless sudo (it installs PostgreSQL and runs psql as the postgres user)"
    exit 1
fi

# Runs a shell command as the postgres user.
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        su postgres -c "$1"
    else
        "${SUDO[@]}" -u postgres sh -c "$1"
    fi
}

# Everything main prints goes to stderr: stdout is reserved for the export line. (No extra
# file descriptor is opened for it: the server started below would inherit it, and a caller
# reading stdout through `$(...)` would then wait for the server to exit.)
main() {
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        log "pg_ctlcluster not found: installing PostgreSQL"
        export DEBIAN_FRONTEND=noninteractive
        "${SUDO[@]}" apt-get update
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
    fi

    # The newest installed major version (e.g. 15, 16), not a hard-coded one.
    version="$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)"
    if [ -z "$version" ]; then
        log "no PostgreSQL server found under /usr/lib/postgresql after installation"
        exit 1
    fi

    # The first cluster of that version (normally `main`); create one if there is none.
    cluster="$(pg_lsclusters --no-header 2>/dev/null | awk -v v="$version" '$1 == v { print $2; exit }')"
    if [ -z "$cluster" ]; then
        log "creating cluster $version/main"
        "${SUDO[@]}" pg_createcluster "$version" main
        cluster=main
    fi
    port="$(pg_lsclusters --no-header | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { print $3; exit }')"

    status="$(pg_lsclusters --no-header | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { print $4; exit }')"
    if [ "$status" != "online" ]; then
        log "starting cluster $version/$cluster on port $port"
        "${SUDO[@]}" pg_ctlcluster "$version" "$cluster" start
    else
        log "cluster $version/$cluster already running on port $port"
    fi

    # Wait until the server accepts connections (start returns early on some systems).
    for _ in $(seq 1 30); do
        if as_postgres "psql -p $port -Atqc 'SELECT 1'" >/dev/null 2>&1; then
            break
        fi
        sleep 1
    done
    if ! as_postgres "psql -p $port -Atqc 'SELECT 1'" >/dev/null 2>&1; then
        log "the server on port $port does not accept connections; see /var/log/postgresql/"
        exit 1
    fi

    if [ "$(as_postgres "psql -p $port -Atqc \"SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'\"")" != "1" ]; then
        log "creating role $ROLE"
        as_postgres "psql -p $port -qc \"CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD' SUPERUSER\""
    else
        log "role $ROLE exists"
    fi

    if [ "$(as_postgres "psql -p $port -Atqc \"SELECT 1 FROM pg_database WHERE datname = '$DATABASE'\"")" != "1" ]; then
        log "creating database $DATABASE"
        as_postgres "createdb -p $port -O $ROLE $DATABASE"
    else
        log "database $DATABASE exists"
    fi
}

main </dev/null >&2
echo "export ES_POSTGRES_URL=postgres://$ROLE:$PASSWORD@127.0.0.1:$port/$DATABASE"
