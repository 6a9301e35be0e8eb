#!/usr/bin/env bash
# Installs what connec's build and tests need on a fresh Debian machine, and
# only what is missing:
#   - PostgreSQL server binaries (connec starts its own embedded/throwaway cluster from them);
#   - Chromium and chromedriver (the web UI is tested in a real headless browser);
#   - Node.js and npm (the OpenClaw plugin host; npm installs the interop tests'
#     pinned packages, which bring their own Node 22), if absent.
set -euo pipefail

have_pg() {
  command -v postgres >/dev/null 2>&1 && return 0
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1
}

missing=()
have_pg || missing+=(postgresql)
{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || missing+=(chromium chromium-driver)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  echo "ensure-deps: installing Debian packages: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
have_pg || { echo "ensure-deps: still no PostgreSQL binaries" >&2; exit 1; }
command -v go >/dev/null 2>&1 || { echo "ensure-deps: Go 1.26+ is required (https://go.dev/dl/)" >&2; exit 1; }
