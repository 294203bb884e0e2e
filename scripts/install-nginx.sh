#!/usr/bin/env bash
# Installs Debian's nginx (the light build) when the binary is missing. The
# Elasticsearch auth tests put nginx in front of Elasticsearch as a TLS +
# basic-auth reverse proxy, because the integ-test-zip build of
# Elasticsearch has no security module. Idempotent and quiet: prints nothing
# when nginx is already installed. The tests start their own nginx with a
# config in a temporary directory; the system service is never started.
set -euo pipefail

if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-nginx: apt-get not found; install nginx by hand" >&2
    exit 1
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
# The package's maintainer scripts try to start the service; there is no init
# system in containers and CI, and it would take port 80.
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

if ! apt-cache policy nginx-light 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    "${sudo_cmd[@]}" apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null
fi
"${sudo_cmd[@]}" apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends nginx-light >/dev/null

command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]
