#!/usr/bin/env bash
# Debian's chromium, for the dashboard's browser tests (tests/browser). Idempotent.
# Playwright drives it through executable_path; its own browser download is not used.
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
echo "[browser] installing chromium (Debian package)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  chromium fonts-dejavu-core >/dev/null
chromium --version
