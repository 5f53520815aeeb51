# Shared helpers for scripts/run, scripts/test and scripts/bench. Source it; do not run it.
set -euo pipefail

TG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="/opt/swift/usr/bin:$PATH"

tg_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs the Debian packages that are missing (apt), as root or through sudo.
tg_need_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    tg_log "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

TG_RUNTIME_PACKAGES=(nginx-light libfcgi-dev libsqlite3-dev libcurl4-openssl-dev libssl-dev libpcre2-dev libutf8proc-dev
    libpq-dev
    openssl curl pkg-config ca-certificates)

# A free TCP port on 127.0.0.1.
tg_free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a private PostgreSQL server (Debian's postgresql) for tests and benchmarks: its cluster in DIR
# (made on first use), listening on 127.0.0.1:PORT and a socket in DIR, trust authentication for the
# user `tenantgate`, nothing else reachable. As root it runs as the `postgres` user (PostgreSQL refuses
# to run as root). TG_PG_FAST=1 turns off fsync (a test cluster: a machine crash may lose it);
# TG_PG_OPTIONS adds server options (e.g. "-c shared_preload_libraries=pg_stat_statements" to see
# what the gateway runs: CREATE EXTENSION pg_stat_statements, then read the view).
# Prints the URL: postgres://tenantgate@127.0.0.1:PORT/tenantgate
tg_postgres_start() {
    local dir="$1" port="$2" bin
    bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    [ -x "$bin/initdb" ] || { echo "PostgreSQL server not found (apt install postgresql)" >&2; return 1; }
    local as=()
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
        as=(runuser -u postgres --)
    fi
    if [ ! -s "$dir/data/PG_VERSION" ]; then
        "${as[@]}" "$bin/initdb" -D "$dir/data" -U tenantgate -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
            { cat "$dir/initdb.log" >&2; return 1; }
    fi
    local opts="-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=400"
    [ "${TG_PG_FAST:-0}" = 1 ] && opts="$opts -c fsync=off -c full_page_writes=off"
    [ -n "${TG_PG_OPTIONS:-}" ] && opts="$opts $TG_PG_OPTIONS"
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$opts" start >/dev/null ||
        { cat "$dir/server.log" >&2; return 1; }
    "${as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U tenantgate tenantgate 2>/dev/null || true
    echo "postgres://tenantgate@127.0.0.1:$port/tenantgate"
}

# Stops the server tg_postgres_start started in DIR.
tg_postgres_stop() {
    local dir="$1" bin
    bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    [ -s "$dir/data/postmaster.pid" ] || return 0
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    else
        "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
}

tg_check_swift() {
    command -v swift >/dev/null || { echo "swift not found: install Swift 6 (https://swift.org) and retry" >&2; exit 1; }
}

# Builds the tenantgate binary: tg_build debug|release; prints its path.
tg_build() {
    local config="${1:-release}"
    (cd "$TG_ROOT" && swift build -c "$config" --product tenantgate >&2)
    echo "$TG_ROOT/.build/$config/tenantgate"
}

# Creates the runtime home: directories, master key (0600) and a self-signed TLS certificate.
tg_init_home() {
    local home="$1"
    mkdir -p "$home/run/tmp" "$home/run/conf.d" "$home/log" "$home/tls"
    chmod 700 "$home"
    # A home inside a git checkout (any name, not only ./var) is never one `git add -A` away from
    # committing master.key, admin.password or the database.
    [ -e "$home/.gitignore" ] || printf '# TenantGate runtime home: secrets and data, never committed.
*
' > "$home/.gitignore"
    if [ ! -s "$home/master.key" ] && [ -z "${TENANTGATE_MASTER_KEY:-}" ]; then
        (umask 077 && openssl rand -hex 32 > "$home/master.key")
    fi
    if [ ! -s "$home/tls/cert.pem" ]; then
        (umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=localhost" \
            -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
            -keyout "$home/tls/key.pem" -out "$home/tls/cert.pem" 2>/dev/null)
    fi
}

# Renders nginx/ and conf.d/ templates into $home/run. Env: TENANTGATE_HTTPS_PORT, TENANTGATE_HTTP_PORT,
# TENANTGATE_BIND, TENANTGATE_MAX_BODY, TENANTGATE_FASTCGI (default unix:$home/run/tenantgate.sock).
tg_render_nginx() {
    local home
    home="$(cd "$1" && pwd)"
    local run="$home/run"
    local fastcgi="${TENANTGATE_FASTCGI:-unix:$run/tenantgate.sock}"
    local user_line=""
    # nginx started as root would drop its workers to 'nobody', who cannot reach the socket.
    [ "$(id -u)" -eq 0 ] && user_line="user root root;"
    mkdir -p "$run/conf.d" "$run/tmp"
    local sed_args=(
        -e "s|@HOME@|$home|g" -e "s|@RUN@|$run|g" -e "s|@LOG@|$home/log|g" -e "s|@PUBLIC@|$TG_ROOT/public|g"
        -e "s|@HTTPS_PORT@|${TENANTGATE_HTTPS_PORT:-8443}|g" -e "s|@HTTP_PORT@|${TENANTGATE_HTTP_PORT:-8080}|g"
        -e "s|@BIND@|${TENANTGATE_BIND:-127.0.0.1}|g" -e "s|@MAX_BODY@|${TENANTGATE_MAX_BODY:-1048576}|g"
        -e "s|@FASTCGI@|$fastcgi|g"
    )
    { [ -n "$user_line" ] && echo "$user_line"; sed "${sed_args[@]}" "$TG_ROOT/nginx/nginx.conf"; } > "$run/nginx.conf"
    rm -f "$run/conf.d/"*
    local f
    for f in "$TG_ROOT"/conf.d/*.conf "$TG_ROOT"/conf.d/*.params; do
        sed "${sed_args[@]}" "$f" > "$run/conf.d/$(basename "$f")"
    done
    nginx -t -q -p "$run" -c "$run/nginx.conf" -e "$home/log/nginx-error.log"
}

tg_nginx() {
    local home="$1"; shift
    nginx -p "$home/run" -c "$home/run/nginx.conf" -e "$home/log/nginx-error.log" "$@"
}

# Writes the wrapper a web server runs: $2/tenantgate.fcgi for the home $1 (binary in $1/bin). The same
# binary serves FastCGI (mod_fcgid, spawn-fcgi: fd 0 is a listening socket) or one CGI request.
tg_write_wrapper() {
    local home="$1" dest="$2"
    mkdir -p "$dest"
    cat > "$dest/tenantgate.fcgi" <<WRAP
#!/bin/sh
# TenantGate under a web server (FastCGI or CGI: the binary tells which from fd 0). Written by scripts/lib.sh.
TENANTGATE_HOME='$home'
export TENANTGATE_HOME
exec '$home/bin/tenantgate' worker --threads 2 --max-body ${TENANTGATE_MAX_BODY:-1048576} --log '$home/log/tenantgate.log'
WRAP
    chmod 755 "$dest/tenantgate.fcgi"
}

# Renders a private Apache (no root, one port) serving TenantGate in one of the shared-hosting setups:
#   tg_render_apache HOME MODE PORT [PREFIX]
#   MODE fcgid:    the vhost include (conf.d/apache/tenantgate-fcgid.conf), wrapper in HOME/cgi
#   MODE htaccess: a web directory HOME/www/PREFIX with conf.d/apache/htaccess and the wrapper (mod_fcgid)
#   MODE cgi:      as htaccess, with the wrapper run as classic CGI (mod_cgid)
# The result is HOME/run/apache/httpd.conf; start it with tg_apache HOME start.
tg_render_apache() {
    local home mode="$2" port="$3" prefix="${4:-llm}"
    home="$(cd "$1" && pwd)"
    local run="$home/run/apache" mods=/usr/lib/apache2/modules
    mkdir -p "$run/fcgid" "$run/www" "$home/log"
    local body=""
    case "$mode" in
        fcgid)
            tg_write_wrapper "$home" "$home/cgi"
            sed -e "s|@HOME@|$home|g" -e "s|@CGI@|$home/cgi|g" -e "s|@MAX_BODY@|${TENANTGATE_MAX_BODY:-1048576}|g" \
                "$TG_ROOT/conf.d/apache/tenantgate-fcgid.conf" > "$run/tenantgate-fcgid.conf"
            body="Include $run/tenantgate-fcgid.conf"
            ;;
        htaccess|cgi)
            tg_write_wrapper "$home" "$run/www/$prefix"
            sed -e "s|@PREFIX@|$prefix|g" -e "s|@MAX_BODY@|${TENANTGATE_MAX_BODY:-1048576}|g" \
                "$TG_ROOT/conf.d/apache/htaccess" > "$run/www/$prefix/.htaccess"
            if [ "$mode" = cgi ]; then
                sed -i -e 's|^AddHandler fcgid-script .fcgi|AddHandler cgi-script .fcgi|' "$run/www/$prefix/.htaccess"
            fi
            body="FcgidInitialEnv TENANTGATE_HOME $home
FcgidOutputBufferSize 0
FcgidMaxRequestLen ${TENANTGATE_MAX_BODY:-1048576}
FcgidIOTimeout 3600
FcgidBusyTimeout 3600
FcgidMaxProcessesPerClass 32
LimitRequestBody ${TENANTGATE_MAX_BODY:-1048576}"
            ;;
        *) echo "tg_render_apache: unknown mode $mode" >&2; return 2 ;;
    esac
    cat > "$run/httpd.conf" <<CONF
# A private Apache for TenantGate ($mode), rendered by scripts/lib.sh.
ServerRoot "$run"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile "$run/httpd.pid"
DefaultRuntimeDir "$run"
ErrorLog "$home/log/apache-error.log"
LogLevel warn
LogFormat "%h %t \"%r\" %>s %b %D" timed
CustomLog "$home/log/apache-access.log" timed
LoadModule mpm_event_module $mods/mod_mpm_event.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule mime_module $mods/mod_mime.so
LoadModule rewrite_module $mods/mod_rewrite.so
LoadModule unique_id_module $mods/mod_unique_id.so
LoadModule headers_module $mods/mod_headers.so
LoadModule fcgid_module $mods/mod_fcgid.so
LoadModule cgid_module $mods/mod_cgid.so
TypesConfig /etc/mime.types
ScriptSock "$run/cgid.sock"
FcgidIPCDir "$run/fcgid"
FcgidProcessTableFile "$run/fcgid/table"
MaxRequestWorkers 150
ThreadsPerChild 25
Timeout 3600
DocumentRoot "$run/www"
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "$run/www">
    AllowOverride FileInfo Options AuthConfig
    Options FollowSymLinks
    Require all granted
</Directory>
$body
CONF
}

# Starts or stops the private Apache of a home: tg_apache HOME start|stop. As root it runs as 'nobody'
# (Apache refuses to serve as root), so the home is handed to that user first.
tg_apache() {
    local home="$1" action="$2" run="$1/run/apache"
    local as=()
    if [ "$(id -u)" -eq 0 ]; then
        chown -R nobody:nogroup "$home"
        as=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
    fi
    case "$action" in
        start) "${as[@]}" apache2 -f "$run/httpd.conf" -k start ;;
        stop)
            [ -s "$run/httpd.pid" ] || return 0
            local pid
            pid="$(cat "$run/httpd.pid")"
            "${as[@]}" apache2 -f "$run/httpd.conf" -k stop 2>/dev/null || true
            # -k stop only signals: wait for the server (and its FastCGI processes) to be gone.
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            rm -f "$run/httpd.pid"
            ;;
    esac
}

# Renders the nginx snippet for an existing server {}: tg_render_snippet HOME PREFIX OUTDIR writes
# OUTDIR/tenantgate-locations.conf (include it inside the server block) and the FastCGI params it uses.
# The pool's socket is TENANTGATE_FASTCGI (default unix:HOME/run/tenantgate.sock).
tg_render_snippet() {
    local home prefix="$2" out="$3"
    home="$(cd "$1" && pwd)"
    case "$prefix" in /*[!/]) ;; *) echo "tg_render_snippet: PREFIX must start with / and not end with /" >&2; return 2 ;; esac
    mkdir -p "$out"
    cp "$TG_ROOT/conf.d/tenantgate_fastcgi.params" "$out/tenantgate_fastcgi.params"
    sed -e "s|@PREFIX@|$prefix|g" -e "s|@FASTCGI@|${TENANTGATE_FASTCGI:-unix:$home/run/tenantgate.sock}|g" \
        -e "s|@PARAMS@|$out/tenantgate_fastcgi.params|g" -e "s|@PUBLIC@|$TG_ROOT/public|g" \
        -e "s|@MAX_BODY@|${TENANTGATE_MAX_BODY:-1048576}|g" \
        "$TG_ROOT/conf.d/snippets/tenantgate-locations.conf" > "$out/tenantgate-locations.conf"
}
