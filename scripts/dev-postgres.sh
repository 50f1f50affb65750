#!/usr/bin/env bash
# dev-postgres.sh: find or start a Postgres for local runs, tests and benches.
#
#   scripts/dev-postgres.sh [run]    print a DATABASE_URL for `make run` / `make migrate`
#   scripts/dev-postgres.sh test     print a DATABASE_URL for `make test` / `make bench`
#   scripts/dev-postgres.sh stop     stop the private Postgres (if this script started it)
#   scripts/dev-postgres.sh status   say whether the private Postgres runs, and its URL
#
#   source scripts/dev-postgres.sh test   # same, and exports DATABASE_URL into your shell
#
# Only the URL goes to stdout, so `DATABASE_URL=$(scripts/dev-postgres.sh test)` works;
# everything else goes to stderr.
#
# How the database is chosen:
#   1. DATABASE_URL set (and not empty)          -> used as is, in every mode.
#   2. mode `test` only: a server answers on 127.0.0.1:5432 and lets user `postgres`
#      in without a password with the right to CREATE DATABASE (sqlx::test needs it)
#                                                -> postgres://postgres@127.0.0.1:5432/postgres
#   3. otherwise a PRIVATE Postgres owned by this checkout:
#        data      target/pgdata      (initdb: user postgres, auth trust, UTF8, no locale)
#        sockets   target/pgrun       (plus the server log, postgres.log)
#        listens   127.0.0.1:55432    (DEV_PG_PORT), never on other interfaces
#      created on first use, started if not running, reused if running
#                                                -> postgres://postgres@127.0.0.1:55432/postgres
#   `run` never picks the shared server on 5432, so a dev run never writes into it.
#
# Durability is not weakened: fsync and synchronous_commit stay `on` (the defaults).
# initdb/postgres refuse to run as root: when this script runs as root it runs them as
# DEV_PG_USER, else the `postgres` user if it exists, else `nobody`, and chowns the data
# directory to that user. `cargo clean` deletes target/ and with it the private data:
# stop the server first (`make pg-stop`).
#
# Environment knobs: DEV_PG_PORT (55432), DEV_PG_DIR (<repo>/target), DEV_PG_USER,
# PG_BINDIR (where initdb/pg_ctl live), DEV_PG_SYSTEM_PORT (5432), DEV_PG_MODE (run).

_devpg_log() { printf 'dev-postgres: %s\n' "$*" >&2; }

_devpg_repo_root() {
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" || return 1
    (cd "$here/.." && pwd)
}

# The directory holding initdb, pg_ctl and postgres.
_devpg_bindir() {
    local dir candidate
    for candidate in "${PG_BINDIR:-}" "$(pg_config --bindir 2>/dev/null || true)"; do
        if [[ -n "$candidate" && -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    # Debian/Ubuntu (/usr/lib/postgresql/N/bin) and RHEL (/usr/pgsql-N/bin): newest first.
    while IFS= read -r dir; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done < <(ls -d /usr/lib/postgresql/*/bin /usr/pgsql-*/bin 2>/dev/null | sort -V -r)
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

# A client tool (pg_isready, psql): from the server's bindir if there is one, else PATH.
_devpg_tool() {
    local bindir
    if bindir="$(_devpg_bindir)" && [[ -x "$bindir/$1" ]]; then
        printf '%s\n' "$bindir/$1"
    elif command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
    else
        return 1
    fi
}

# The user that owns and runs the private server ("" = the current user).
_devpg_owner() {
    if [[ "$(id -u)" != 0 ]]; then
        printf '\n'
    elif [[ -n "${DEV_PG_USER:-}" ]]; then
        printf '%s\n' "$DEV_PG_USER"
    elif id -u postgres >/dev/null 2>&1; then
        printf 'postgres\n'
    else
        printf 'nobody\n'
    fi
}

# Run a command as the owner, from / (the owner may not be able to enter the cwd).
_devpg_as_owner() {
    local owner
    owner="$(_devpg_owner)"
    if [[ -z "$owner" ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u "$owner" -- "$@")
    else
        local quoted
        quoted="$(printf '%q ' "$@")"
        (cd / && su -s /bin/sh "$owner" -c "$quoted")
    fi
}

# Sets _DEVPG_DATA, _DEVPG_RUN (socket dir + log) and _DEVPG_PORT.
_devpg_paths() {
    local root base owner
    root="$(_devpg_repo_root)" || return 1
    base="${DEV_PG_DIR:-$root/target}"
    owner="$(_devpg_owner)"
    # As root the server runs as another user, who must be able to reach the data
    # directory; a checkout under /root is not reachable, so fall back to /tmp.
    if [[ -n "$owner" && -z "${DEV_PG_DIR:-}" ]]; then
        mkdir -p "$base" || return 1
        if ! _devpg_as_owner test -x "$base"; then
            base="${TMPDIR:-/tmp}/budpipeline-devpg-$(printf '%s' "$root" | cksum | cut -d' ' -f1)"
            _devpg_log "user $owner cannot reach $root/target; using $base instead"
        fi
    fi
    _DEVPG_DATA="$base/pgdata"
    _DEVPG_RUN="$base/pgrun"
    _DEVPG_PORT="${DEV_PG_PORT:-55432}"
    # A unix socket path is limited to ~107 bytes.
    if (( ${#_DEVPG_RUN} + 20 > 100 )); then
        _DEVPG_RUN="${TMPDIR:-/tmp}/budpipeline-devpg-$(printf '%s' "$root" | cksum | cut -d' ' -f1)-run"
    fi
}

# 0 when the private server runs (per its postmaster.pid).
_devpg_running() {
    local bindir
    bindir="$(_devpg_bindir)" || return 1
    [[ -f "$_DEVPG_DATA/PG_VERSION" ]] || return 1
    _devpg_as_owner "$bindir/pg_ctl" status -D "$_DEVPG_DATA" >/dev/null 2>&1
}

# The port the running private server really listens on (line 4 of postmaster.pid).
_devpg_running_port() {
    local port
    port="$(sed -n 4p "$_DEVPG_DATA/postmaster.pid" 2>/dev/null)"
    if [[ "$port" =~ ^[0-9]+$ ]]; then printf '%s\n' "$port"; else printf '%s\n' "$_DEVPG_PORT"; fi
}

_devpg_wait_ready() {
    local port="$1" isready i
    isready="$(_devpg_tool pg_isready)" || return 0
    for ((i = 0; i < 60; i++)); do
        "$isready" -q -h 127.0.0.1 -p "$port" -t 1 && return 0
        sleep 0.5
    done
    _devpg_log "Postgres on 127.0.0.1:$port did not become ready in 30 s"
    return 1
}

_devpg_start_private() {
    local bindir owner isready port escaped
    _devpg_paths || return 1
    if ! bindir="$(_devpg_bindir)"; then
        _devpg_log "no PostgreSQL server binaries found (looked at \$PG_BINDIR, pg_config --bindir,"
        _devpg_log "/usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, PATH)."
        _devpg_log "Install them (Debian: apt-get install postgresql) or set DATABASE_URL."
        return 1
    fi
    owner="$(_devpg_owner)"

    if _devpg_running; then
        port="$(_devpg_running_port)"
        _devpg_wait_ready "$port" || return 1
        _devpg_log "reusing the private Postgres in $_DEVPG_DATA (port $port)"
        printf 'postgres://postgres@127.0.0.1:%s/postgres\n' "$port"
        return 0
    fi

    port="$_DEVPG_PORT"
    if isready="$(_devpg_tool pg_isready)"; then
        # 0 accepting, 1 rejecting (starting up / shutting down), 2 no answer.
        if "$isready" -q -h 127.0.0.1 -p "$port" -t 2 || [[ $? == 1 ]]; then
            _devpg_log "something else already listens on 127.0.0.1:$port; set DEV_PG_PORT or DATABASE_URL"
            return 1
        fi
    fi

    mkdir -p "$_DEVPG_RUN" || return 1
    if [[ -n "$owner" ]]; then
        mkdir -p "$_DEVPG_DATA" || return 1
        chown -R "$owner:" "$_DEVPG_DATA" "$_DEVPG_RUN" || return 1
    fi
    if [[ ! -f "$_DEVPG_DATA/PG_VERSION" ]]; then
        _devpg_log "initdb $_DEVPG_DATA (as ${owner:-$(id -un)})"
        if [[ -d "$_DEVPG_DATA" ]] && [[ -n "$(ls -A "$_DEVPG_DATA" 2>/dev/null)" ]]; then
            _devpg_log "$_DEVPG_DATA exists but holds no cluster; remove it and try again"
            return 1
        fi
        _devpg_as_owner "$bindir/initdb" -D "$_DEVPG_DATA" -U postgres --auth=trust \
            --encoding=UTF8 --no-locale >"$_DEVPG_RUN/initdb.log" 2>&1 || {
            _devpg_log "initdb failed; see $_DEVPG_RUN/initdb.log"
            tail -n 20 "$_DEVPG_RUN/initdb.log" >&2
            return 1
        }
        printf "\n# added by scripts/dev-postgres.sh\ninclude_if_exists = 'budpipeline-dev.conf'\n" \
            >>"$_DEVPG_DATA/postgresql.conf" || return 1
    fi
    # Rewritten on every start so DEV_PG_PORT and paths stay current.
    escaped="${_DEVPG_RUN//\'/\'\'}"
    cat >"$_DEVPG_DATA/budpipeline-dev.conf" <<EOF || return 1
# Written by scripts/dev-postgres.sh on every start; edits are lost.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$escaped'
max_connections = 200
# Durability stays at the defaults: do not turn these off to make tests faster.
fsync = on
synchronous_commit = on
full_page_writes = on
EOF
    [[ -n "$owner" ]] && chown "$owner:" "$_DEVPG_DATA/budpipeline-dev.conf" "$_DEVPG_RUN"

    _devpg_log "starting the private Postgres on 127.0.0.1:$port (log: $_DEVPG_RUN/postgres.log)"
    if ! _devpg_as_owner "$bindir/pg_ctl" start -D "$_DEVPG_DATA" -l "$_DEVPG_RUN/postgres.log" \
        -w -t 60 >/dev/null; then
        _devpg_log "pg_ctl start failed; last lines of $_DEVPG_RUN/postgres.log:"
        tail -n 20 "$_DEVPG_RUN/postgres.log" >&2 2>/dev/null
        return 1
    fi
    _devpg_wait_ready "$port" || return 1
    printf 'postgres://postgres@127.0.0.1:%s/postgres\n' "$port"
}

# Test mode: the shared server on 127.0.0.1:5432, if it answers and suits sqlx::test.
_devpg_system_url() {
    local port="${DEV_PG_SYSTEM_PORT:-5432}" isready psql url ok
    url="postgres://postgres@127.0.0.1:$port/postgres"
    isready="$(_devpg_tool pg_isready)" || return 1
    "$isready" -q -h 127.0.0.1 -p "$port" -t 3 || return 1
    if psql="$(_devpg_tool psql)"; then
        ok="$(PGCONNECT_TIMEOUT=5 "$psql" "$url" -XAtq -c \
            "select rolsuper or rolcreatedb from pg_roles where rolname = current_user" 2>/dev/null)"
        if [[ "$ok" != t ]]; then
            _devpg_log "127.0.0.1:$port answers but user postgres cannot log in without a password"
            _devpg_log "or cannot CREATE DATABASE; using the private Postgres instead"
            return 1
        fi
    fi
    printf '%s\n' "$url"
}

_devpg_stop() {
    local bindir
    _devpg_paths || return 1
    if ! _devpg_running; then
        _devpg_log "the private Postgres ($_DEVPG_DATA) is not running"
        return 0
    fi
    bindir="$(_devpg_bindir)" || return 1
    _devpg_as_owner "$bindir/pg_ctl" stop -D "$_DEVPG_DATA" -m fast -w -t 60 >/dev/null || return 1
    _devpg_log "stopped the private Postgres ($_DEVPG_DATA)"
}

_devpg_status() {
    _devpg_paths || return 1
    if _devpg_running; then
        _devpg_log "running: $_DEVPG_DATA"
        printf 'postgres://postgres@127.0.0.1:%s/postgres\n' "$(_devpg_running_port)"
    else
        _devpg_log "not running: $_DEVPG_DATA"
        return 3
    fi
}

_devpg_usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

_devpg_main() {
    local mode="${1:-${DEV_PG_MODE:-run}}" url
    case "$mode" in
        run | test)
            if [[ -n "${DATABASE_URL:-}" ]]; then
                _devpg_log "using DATABASE_URL from the environment"
                printf '%s\n' "$DATABASE_URL"
                return 0
            fi
            if [[ "$mode" == test ]] && url="$(_devpg_system_url)"; then
                _devpg_log "using the Postgres that answers on 127.0.0.1:${DEV_PG_SYSTEM_PORT:-5432}"
                printf '%s\n' "$url"
                return 0
            fi
            _devpg_start_private
            ;;
        stop) _devpg_stop ;;
        status) _devpg_status ;;
        -h | --help | help) _devpg_usage ;;
        *)
            _devpg_log "unknown mode '$mode'"
            _devpg_usage
            return 2
            ;;
    esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -uo pipefail
    _devpg_main "$@"
    exit $?
else
    # Sourced: export DATABASE_URL into the caller's shell. Without an explicit mode
    # argument the caller's own positional parameters are visible here, so only a
    # known mode word counts.
    case "${1:-}" in
        run | test) _devpg_mode="$1" ;;
        stop | status) _devpg_mode="" ; _devpg_main "$1" ;;
        *) _devpg_mode="${DEV_PG_MODE:-run}" ;;
    esac
    if [[ -n "$_devpg_mode" ]]; then
        if _devpg_url="$(_devpg_main "$_devpg_mode")"; then
            export DATABASE_URL="$_devpg_url"
            printf '%s\n' "$DATABASE_URL"
        else
            _devpg_log "no database; DATABASE_URL left unchanged"
        fi
    fi
    unset _devpg_mode _devpg_url
fi
