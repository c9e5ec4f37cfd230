#!/usr/bin/env bash
# Install what tests/test_mta.py drives: Debian's postfix (a private instance per test, see
# tests/mta.py) and swaks (an SMTP client).  Does nothing, silently, when both are installed;
# otherwise installs them non-interactively and prints apt's output only if that fails.
#
# The system's own Postfix is configured "Local only" (loopback, no relaying), so a CI
# machine does not become a mail server; the tests never use it.
set -euo pipefail

packages=(postfix swaks)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for package in "${packages[@]}"; do
    installed "$package" || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
    echo "setup-mta: ${missing[*]} missing and no apt-get here; install them by hand" >&2
    exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "setup-mta: ${missing[*]} missing; run this script as root to install them" >&2
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
    "${apt_get[@]}" install -y "${missing[@]}"
} >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup-mta: installing ${missing[*]} failed" >&2
    exit 1
fi
