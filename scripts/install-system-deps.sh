#!/usr/bin/env bash
# Debian packages the test suite uses, installed only when missing:
#   prometheus  prometheus + promtool: rules, metrics format, live scrape tests
#   chromium    the live page's screenshot test
#   nginx       TLS + basic-auth proxy in front of Elasticsearch
#   openssl     that proxy's throwaway certificates
# With package names as arguments, only those. Idempotent and quiet: prints
# nothing when everything is there. Packaged daemons are never started: the
# tests start their own, on free ports, with configs in temporary folders.
set -euo pipefail

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(prometheus chromium nginx openssl)

have() {
  case "$1" in
    prometheus) command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 ;;
    nginx) command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
for pkg in "${wanted[@]}"; do
  have "$pkg" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: no apt-get; install by hand: ${missing[*]}" >&2
  exit 1
fi
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

echo "install-system-deps: installing ${missing[*]} (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
# Maintainer scripts would start the daemons (nginx on port 80, prometheus on
# 9090); policy-rc.d answering 101 forbids that while we install.
policy_rc=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy_rc" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy_rc" >/dev/null
  "${sudo_cmd[@]}" chmod 755 "$policy_rc"
  created_policy=1
fi
trap '[ "$created_policy" -eq 1 ] && "${sudo_cmd[@]}" rm -f "$policy_rc"' EXIT
"${sudo_cmd[@]}" apt-get update -qq >/dev/null
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for pkg in "${missing[@]}"; do
  have "$pkg" || { echo "install-system-deps: $pkg did not install" >&2; exit 1; }
done
