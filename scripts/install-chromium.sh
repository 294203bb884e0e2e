#!/usr/bin/env bash
# Installs Debian's chromium for the live page's headless screenshot test
# (tests/test_page.py) when no chromium binary is on PATH. Debian's package
# and not a browser download: the machines reach Debian's archive but no
# browser vendor. Idempotent and quiet: prints nothing when it is installed.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: apt-get not found; install chromium by hand" >&2
    exit 1
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    "${sudo_cmd[@]}" apt-get update -qq >/dev/null
fi
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null

command -v chromium >/dev/null
