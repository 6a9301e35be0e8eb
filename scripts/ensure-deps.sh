#!/usr/bin/env bash
# Installs what connec's build and tests need on a fresh Debian machine, and
# only what is missing: the PostgreSQL server binaries (connec starts its own
# throwaway/embedded cluster from them).
set -euo pipefail

have_pg() {
  command -v postgres >/dev/null 2>&1 && return 0
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1
}

if ! have_pg; then
  echo "ensure-deps: PostgreSQL server binaries not found; installing Debian's postgresql package" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
have_pg || { echo "ensure-deps: still no PostgreSQL binaries" >&2; exit 1; }
command -v go >/dev/null 2>&1 || { echo "ensure-deps: Go 1.26+ is required (https://go.dev/dl/)" >&2; exit 1; }
