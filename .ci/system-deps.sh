#!/usr/bin/env bash
# System packages the workbook and its tests need, from Debian's archive:
#   graphviz  the `dot` program that draws the state graphs (gmemlab falls back to a
#             pure-Python drawing without it);
#   chromium  /usr/bin/chromium, which the browser test drives through Playwright
#             (Playwright never downloads a browser of its own here);
#   spin      the SPIN model checker, the peer whose state counts cross-check the
#             explorer (benchmarks/peers/, tests/test_peers.py).
# Installs only what is missing, and only as root with apt-get; otherwise it says what
# to install and leaves the rest to the tests (outside CI the browser test then skips;
# under CI=true a missing package is an error).
set -euo pipefail

need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v spin >/dev/null 2>&1 || need+=(spin)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing ${need[*]}; install them with: sudo apt-get install ${need[*]}" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
    exit 0
fi

echo "system-deps: installing ${need[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" fonts-dejavu-core >/dev/null
