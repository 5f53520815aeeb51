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
    openssl curl pkg-config ca-certificates)

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
