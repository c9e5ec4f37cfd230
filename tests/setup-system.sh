#!/usr/bin/env bash
# Install the Debian programs the tests drive: postfix (a private instance per test, see
# tests/mta.py) and swaks (an SMTP client) for tests/test_mta.py, chromium and its driver for
# the verification pages in a real browser (tests/browser.py), systemd for
# `systemd-analyze verify`, and postgresql, whose server programs the tests run as a private
# cluster in a temporary folder (tests/postgres.py).  Does nothing, silently, when all are installed; otherwise installs
# the missing ones non-interactively (one `apt-get update`) and prints apt's output only if that fails.
#
# The system's own Postfix is configured "Local only" (loopback, no relaying) and is never left
# running: a policy-rc.d keeps the package from starting it during the install, and afterwards
# it is disabled and stopped, so no system Postfix listens on port 25.  The tests only run
# private Postfix instances (tests/mta.py) and never use the system one.  The same holds for
# PostgreSQL: the cluster the package makes is stopped and disabled; the tests start their own.
set -euo pipefail

packages=(postfix swaks chromium chromium-driver systemd postgresql)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for package in "${packages[@]}"; do
    installed "$package" || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
    echo "setup-system: ${missing[*]} missing and no apt-get here; install them by hand" >&2
    exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "setup-system: ${missing[*]} missing; run this script as root to install them" >&2
        exit 1
    fi
    as_root=(sudo)
fi

log=$(mktemp)
policy=/usr/sbin/policy-rc.d
cleanup() {
    rm -f "$log"
    if [ -n "${own_policy:-}" ]; then "${as_root[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then  # exit 101: "do not start services" for the packages installed now
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 0755 "$policy"
    own_policy=1
fi
apt_get=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q)
if ! {
    printf '%s\n' \
        'postfix postfix/main_mailer_type select Local only' \
        'postfix postfix/mailname string localhost' |
        "${as_root[@]}" debconf-set-selections &&
    "${apt_get[@]}" update &&
    "${apt_get[@]}" install -y --no-install-recommends "${missing[@]}"
} >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup-system: installing ${missing[*]} failed" >&2
    exit 1
fi

# Whatever started them anyway (an existing policy-rc.d that allows it): the system Postfix and
# the system PostgreSQL cluster stay off.
for package in "${missing[@]}"; do
    case "$package" in
    postfix)
        if [ -d /run/systemd/system ]; then
            "${as_root[@]}" systemctl disable --now postfix.service >/dev/null 2>&1 || true
        else
            "${as_root[@]}" systemctl disable postfix.service >/dev/null 2>&1 || true
            "${as_root[@]}" postfix stop >/dev/null 2>&1 || true
        fi
        ;;
    postgresql)
        if [ -d /run/systemd/system ]; then
            "${as_root[@]}" systemctl disable --now postgresql.service >/dev/null 2>&1 || true
        else
            "${as_root[@]}" systemctl disable postgresql.service >/dev/null 2>&1 || true
            for cluster in /etc/postgresql/*/*; do
                [ -d "$cluster" ] || continue
                "${as_root[@]}" pg_ctlcluster "$(basename "$(dirname "$cluster")")" "$(basename "$cluster")" stop \
                    >/dev/null 2>&1 || true
            done
        fi
        ;;
    esac
done
