#!/usr/bin/env bash
# Set up everything decart-widget needs on a fresh Debian machine (or CI): system packages,
# the package itself (editable, which builds the JS bundle) with its dev extras, and the JS deps.
# Installs into the active Python; activate a virtualenv first if you want isolation.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
  || need_apt+=(postgresql)
# the load balancer of the proxy's scale-out test (tests/integration/test_proxy_scale_out.py)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
# the TURN server of the network-namespace browser tests (tests/browser/test_remote_hosts.py)
command -v turnserver >/dev/null 2>&1 || need_apt+=(coturn)
# the SSH tunnel of the same tests: OpenSSH's server and client
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} with apt-get"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "setup: JS dependencies"
(cd js && npm ci --no-audit --no-fund --loglevel=error)

echo "setup: Python package (editable) with dev extras"
# Rebuild the bundle from js/ on every setup so it never lags behind the sources.
rm -f decart_widget/widget/static/widget.js
python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
echo "setup: Decart's own Python SDK in its own venv (a test client, not a dependency)"
# tests/integration/test_decart_sdk.py runs Decart's SDK, unmodified, against the emulator.
sdk_venv=.venv-decart-sdk
if [ ! -x "$sdk_venv/bin/python" ] || ! "$sdk_venv/bin/python" -c "import decart" 2>/dev/null; then
  python -m venv "$sdk_venv"
  "$sdk_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "decart[realtime]==0.2.4" numpy
fi
echo "setup: done"
