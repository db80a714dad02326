#!/usr/bin/env bash
# Install the Python toolchain and the locked dependencies (idempotent).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_VERSION="0.13.9"
if ! command -v uv >/dev/null || [[ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]]; then
  echo "[bootstrap] installing uv $UV_VERSION from PyPI" >&2
  python3 -m pip install --quiet "uv==$UV_VERSION"
fi
cd "$ROOT"
uv sync --frozen --quiet
