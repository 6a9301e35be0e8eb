#!/usr/bin/env bash
# Installs, on a fresh Debian machine, only what is missing of what connec
# needs for one purpose:
#
#   ensure-deps.sh run    running connec (make run):
#                           - PostgreSQL server binaries (connec starts its own embedded cluster from them);
#                           - Node.js, only if OpenClaw plugins are installed in the data dir (they run in it).
#   ensure-deps.sh [test] building and testing it (make test, CI), all of the above and:
#                           - Node.js (the OpenClaw plugin tests) and npm (it installs the interop
#                             tests' pinned packages, which bring their own Node 22);
#                           - Chromium and chromedriver (the web UI is tested in a real headless browser).
#
# Everything it says goes to stderr: `make run` serves MCP on stdout.
set -euo pipefail
exec 1>&2

mode="${1:-test}"
case "$mode" in
  run | test) ;;
  *) echo "usage: $0 [run|test]" >&2; exit 2 ;;
esac

have_pg() {
  command -v postgres >/dev/null 2>&1 && return 0
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1
}

# connec's default data dir (internal/app: CONNEC_DATA_DIR, else
# $XDG_DATA_HOME/connec, else ~/.local/share/connec).
plugins_installed() {
  local data="${CONNEC_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/connec}"
  [ -n "$(ls -A "$data/openclaw/plugins" 2>/dev/null)" ]
}

command -v go >/dev/null 2>&1 || { echo "ensure-deps: Go 1.26+ is required (https://go.dev/dl/)"; exit 1; }

missing=()
have_pg || missing+=(postgresql)
if [ "$mode" = test ] || plugins_installed; then
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
fi
if [ "$mode" = test ]; then
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || missing+=(chromium chromium-driver)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "ensure-deps ($mode): installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
have_pg || { echo "ensure-deps: still no PostgreSQL binaries"; exit 1; }
