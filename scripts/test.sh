#!/usr/bin/env bash
# Run every check CI runs: lint, types, JS tests, Python tests (unit, integration, browser),
# the tutorial notebooks under nbval, the docs build and the packaging check.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*"; }

step "ruff"
ruff check .
ruff format --check .

step "mypy --strict"
mypy

step "TypeScript: typecheck and vitest"
(cd js && npm run --silent typecheck && npm test --silent)

step "pytest: unit, integration, browser"
# Decart's own SDK, installed by scripts/setup.sh in its own venv (test_decart_sdk.py).
if [ -z "${DECART_SDK_PYTHON:-}" ] && [ -x .venv-decart-sdk/bin/python ]; then
  export DECART_SDK_PYTHON="$PWD/.venv-decart-sdk/bin/python"
fi
python -m pytest tests -q -p no:cacheprovider "$@"

step "nbval: tutorial notebooks against the emulator"
python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg \
  --nbval-cell-timeout=120 notebooks

step "docs: mkdocs build --strict"
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$(mktemp -d)"

echo
echo "all checks passed"
