#!/usr/bin/env bash
# Starts a local PostgreSQL server for the es-postgres tests, idempotently.
#
# Usage (from the repository root):
#
#     eval "$(bash .ci/postgres.sh)"
#
# stdout carries only `export` lines, so the caller can eval it; every progress message goes
# to stderr. Two are printed:
#
#   ES_POSTGRES_TLS_CA  the PEM file of the test CA that signed the server's certificate
#                       (for 127.0.0.1 and localhost), under $TLS_DIR.
#   ES_POSTGRES_URL     postgres://es:es@127.0.0.1:PORT/es?sslrootcert=$ES_POSTGRES_TLS_CA:
#                       es-postgres's default sslmode (prefer) then uses TLS and verifies the
#                       server against the test CA, so the whole suite runs over verified TLS.
#
# The server gets `ssl = on` with that certificate (ALTER SYSTEM, then a reload); pg_hba's
# `host` lines accept TLS and plaintext alike, so `sslmode=disable` still connects.
#
# Safe to run again: an installed package, a running cluster, an existing role or database,
# a CA and certificate that are still valid and already configured are left as they are.
#
# Needs root or passwordless sudo (it installs packages and runs commands as `postgres`).
set -euo pipefail

ROLE=es
PASSWORD=es
DATABASE=es
# The test CA and the server's certificate and key; owned by postgres, the CA readable by all.
TLS_DIR=/var/lib/postgresql/es-test-tls

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

    setup_tls "$port"
}

# The SQL value of setting $1 on the server at port $2.
setting() {
    as_postgres "psql -p $2 -Atqc 'SHOW $1'"
}

# A test CA and a server certificate signed by it, for 127.0.0.1 and localhost, made once
# (again only if missing, not signed by the CA, or expiring within 30 days); then the
# server's TLS settings pointed at them and reloaded if they differ.
setup_tls() {
    local port="$1"
    if ! command -v openssl >/dev/null 2>&1; then
        log "openssl not found: installing it"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y openssl
    fi
    local ca="$TLS_DIR/ca.crt" crt="$TLS_DIR/server.crt" key="$TLS_DIR/server.key"
    if [ -s "$ca" ] && [ -s "$crt" ] && [ -s "$key" ] \
        && "${SUDO[@]}" openssl verify -CAfile "$ca" "$crt" >/dev/null 2>&1 \
        && "${SUDO[@]}" openssl x509 -checkend 2592000 -noout -in "$crt" >/dev/null 2>&1; then
        log "test CA and server certificate in $TLS_DIR are valid"
    else
        log "creating a test CA and a server certificate for 127.0.0.1 and localhost in $TLS_DIR"
        "${SUDO[@]}" mkdir -p "$TLS_DIR"
        local work
        work="$("${SUDO[@]}" mktemp -d)"
        "${SUDO[@]}" sh -c "
            set -e
            cd '$work'
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -keyout ca.key -out ca.crt -days 3650 -subj '/CN=es-postgres test CA' \
                -addext 'basicConstraints=critical,CA:TRUE' \
                -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -keyout server.key -out server.csr -subj '/CN=localhost' 2>/dev/null
            printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' \
                'basicConstraints=critical,CA:FALSE' \
                'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' > server.ext
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                -days 3650 -extfile server.ext -out server.crt 2>/dev/null
            install -m 0644 ca.crt '$ca'
            install -m 0644 server.crt '$crt'
            install -m 0600 server.key '$key'
            chown -R postgres:postgres '$TLS_DIR'
            chmod 0755 '$TLS_DIR'
        "
        # The CA's key is not kept: nothing else is ever signed with it.
        "${SUDO[@]}" rm -rf "$work"
    fi

    local changed=no
    if [ "$(setting ssl_cert_file "$port")" != "$crt" ]; then
        as_postgres "psql -p $port -qc \"ALTER SYSTEM SET ssl_cert_file = '$crt'\""
        changed=yes
    fi
    if [ "$(setting ssl_key_file "$port")" != "$key" ]; then
        as_postgres "psql -p $port -qc \"ALTER SYSTEM SET ssl_key_file = '$key'\""
        changed=yes
    fi
    if [ "$(setting ssl "$port")" != "on" ]; then
        as_postgres "psql -p $port -qc \"ALTER SYSTEM SET ssl = on\""
        changed=yes
    fi
    if [ "$changed" = yes ]; then
        log "enabling TLS with the test certificate (reloading the configuration)"
        as_postgres "psql -p $port -qAtc 'SELECT pg_reload_conf()'" >/dev/null
        # The reload is asynchronous: wait until the settings show.
        for _ in $(seq 1 30); do
            if [ "$(setting ssl_cert_file "$port")" = "$crt" ] && [ "$(setting ssl "$port")" = "on" ]; then
                break
            fi
            sleep 0.2
        done
    else
        log "TLS already enabled with the test certificate"
    fi
    if [ "$(setting ssl_cert_file "$port")" != "$crt" ] || [ "$(setting ssl "$port")" != "on" ]; then
        log "the server did not take the TLS settings; see /var/log/postgresql/"
        exit 1
    fi
}

main </dev/null >&2
# `port` is set by main; bash keeps it after the function returns.
echo "export ES_POSTGRES_TLS_CA=$TLS_DIR/ca.crt"
echo "export ES_POSTGRES_URL=postgres://$ROLE:$PASSWORD@127.0.0.1:$port/$DATABASE?sslrootcert=$TLS_DIR/ca.crt"
