#!/usr/bin/env bash
# Install the Debian programs the tests drive: postfix (a private instance per test, see
# tests/mta.py) and swaks (an SMTP client) for tests/test_mta.py, chromium and its driver for
# the verification pages in a real browser (tests/browser.py), and systemd for
# `systemd-analyze verify`.  Does nothing, silently, when all are installed; otherwise installs
# the missing ones non-interactively (one `apt-get update`) and prints apt's output only if that fails.
#
# The system's own Postfix is configured "Local only" (loopback, no relaying), so a CI
# machine does not become a mail server; the tests never use it.
set -euo pipefail

packages=(postfix swaks chromium chromium-driver systemd)

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
trap 'rm -f "$log"' EXIT
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
