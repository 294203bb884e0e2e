#!/usr/bin/env bash
# Installs Debian's prometheus package (prometheus + promtool) when either
# binary is missing. The deploy tests need both: promtool checks and unit-tests
# the rules, and a real Prometheus scrapes a running processor. Idempotent and
# quiet: prints nothing when both binaries are already on PATH.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-prometheus: apt-get not found; install prometheus and promtool by hand" >&2
    exit 1
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
# The package's maintainer scripts try to start a service; there is no init
# system in containers and CI, and the tests start their own Prometheus.
policy_rc=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy_rc" >/dev/null
    "${sudo_cmd[@]}" chmod +x "$policy_rc"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        "${sudo_cmd[@]}" rm -f "$policy_rc"
    fi
}
trap cleanup EXIT

log=$(mktemp)
trap 'cleanup; rm -f "$log"' EXIT
if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    "${sudo_cmd[@]}" apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
fi
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends prometheus >"$log" 2>&1 \
    || { cat "$log" >&2; exit 1; }
# Debian's package may have started its own daemon where an init system runs.
if command -v systemctl >/dev/null 2>&1; then
    "${sudo_cmd[@]}" systemctl stop prometheus >/dev/null 2>&1 || true
fi

command -v prometheus >/dev/null && command -v promtool >/dev/null
