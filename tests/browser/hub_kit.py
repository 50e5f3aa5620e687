"""A real JupyterHub for browser tests: the hub, configurable-http-proxy and one user's server.

`JupyterHub` runs ``python -m jupyterhub`` (PyPI ``jupyterhub``) with npm
``configurable-http-proxy`` (``js/node_modules/.bin``) in front, under its own base URL, with the
dummy authenticator (one user, ``alice``, with a known password) and the simple local-process
spawner: the user's JupyterLab is a ``jupyterhub-singleuser`` process next to the hub, reached
only through the proxy at ``{base_url}user/alice/``. A service token lets the test start that
server and read its kernels through the hub's API. It has what `jupyter_servers.JupyterPage`
needs (``notebook_url``, ``kernel_state``, ``root_dir``, ``log``); `log_in` logs a page in.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from jupyter_servers import REPO

#: configurable-http-proxy, installed by ``npm ci`` in js/ (its devDependencies)
CHP = REPO / "js" / "node_modules" / ".bin" / "configurable-http-proxy"
USER = "alice"
BASE_URL = "/hub-prefix/"

Fetch = Callable[[urllib.request.Request, float], tuple[int, bytes]]


def unavailable() -> str | None:
    """Why a hub cannot run here (None: it can)."""
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        return "no jupyterhub (pip install jupyterhub; it is in the dev extra)"
    if not CHP.exists():
        return f"no configurable-http-proxy at {CHP} (cd js && npm ci)"
    return None


def _fetch(request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status), bytes(response.read())


class JupyterHub:
    """``with JupyterHub(ip, port) as hub:``: the hub at ``http://{ip}:{port}{BASE_URL}``."""

    def __init__(
        self,
        ip: str,
        port: int,
        *,
        command_prefix: list[str] | None = None,
        fetch: Fetch | None = None,
        unset_env: list[str] | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        self.ip, self.port = ip, port
        self.base_url = f"http://{ip}:{port}{BASE_URL}"
        self.page_base_url = f"{self.base_url}user/{USER}"
        self.password = secrets.token_hex(8)
        self._token = secrets.token_hex(16)
        self._prefix = list(command_prefix or [])
        self._fetch = fetch or _fetch
        self._unset_env = list(unset_env or [])
        self._startup_timeout = startup_timeout
        self._tmp = Path(tempfile.mkdtemp(prefix="dw-hub-"))
        self.root_dir = self._tmp / "root"
        self.root_dir.mkdir()
        self._log_path = self._tmp / "hub.log"
        self._log: Any = None
        self._process: subprocess.Popen[bytes] | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> JupyterHub:
        settings = self._tmp / "settings" / "@jupyterlab"
        (settings / "notebook-extension").mkdir(parents=True)
        (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
            json.dumps({"windowingMode": "none"})
        )
        (settings / "apputils-extension").mkdir(parents=True)
        (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        config = self._tmp / "jupyterhub_config.py"
        config.write_text(self._config())
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self._tmp),
            "PYTHONPATH": str(REPO),
        }
        self._log = self._log_path.open("wb")
        self._process = subprocess.Popen(
            [*self._prefix, sys.executable, "-m", "jupyterhub", "-f", str(config)],
            env=env,
            cwd=self._tmp,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait(lambda: self._api("GET", "")[0] == 200, "the hub to answer")
        self._api("POST", f"users/{USER}")
        self._api("POST", f"users/{USER}/server")
        self._wait(self._server_ready, f"{USER}'s server to start")
        return self

    def _config(self) -> str:
        lab_settings = self._tmp / "settings"
        lines = [
            f"c.JupyterHub.ip = {self.ip!r}",
            f"c.JupyterHub.port = {self.port}",
            "c.JupyterHub.hub_ip = '127.0.0.1'",
            f"c.JupyterHub.base_url = {BASE_URL!r}",
            f"c.JupyterHub.db_url = 'sqlite:///{self._tmp / 'hub.sqlite'}'",
            f"c.JupyterHub.cookie_secret_file = {str(self._tmp / 'cookie_secret')!r}",
            f"c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]",
            f"c.ConfigurableHTTPProxy.pid_file = {str(self._tmp / 'proxy.pid')!r}",
            "c.JupyterHub.authenticator_class = 'dummy'",
            f"c.DummyAuthenticator.password = {self.password!r}",
            "c.Authenticator.allow_all = True",
            "c.JupyterHub.spawner_class = 'simple'",
            f"c.SimpleLocalProcessSpawner.home_dir_template = {str(self.root_dir)!r}",
            f"c.Spawner.notebook_dir = {str(self.root_dir)!r}",
            "c.Spawner.default_url = '/lab'",
            f"c.Spawner.cmd = [{sys.executable!r}, '-m', 'jupyterhub.singleuser']",
            "c.Spawner.args = ['--allow-root']",
            "c.Spawner.start_timeout = 90",
            "c.Spawner.http_timeout = 90",
            "c.Spawner.environment = "
            + repr(
                {
                    "PYTHONPATH": str(REPO),
                    "JUPYTERLAB_SETTINGS_DIR": str(lab_settings),
                    "JUPYTER_CONFIG_DIR": str(self._tmp / "config"),
                    "JUPYTER_RUNTIME_DIR": str(self._tmp / "runtime"),
                    "IPYTHONDIR": str(self._tmp / "ipython"),
                }
            ),
            # the user's kernel must not inherit a key: the widgets use the automatic emulator
            "c.Spawner.env_keep = ['PATH', 'LANG', 'LC_ALL']",
            f"c.JupyterHub.services = [{{'name': 'tests', 'api_token': {self._token!r}}}]",
            "c.JupyterHub.load_roles = [{'name': 'tests', 'services': ['tests'],"
            " 'scopes': ['admin:users', 'admin:servers', 'access:servers']}]",
        ]
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()  # the hub stops the user's server and the proxy it started
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> JupyterHub:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- the hub's API -----------------------------------------------------------------------

    def _request(self, method: str, url: str) -> tuple[int, bytes]:
        request = urllib.request.Request(
            url, method=method, headers={"Authorization": f"token {self._token}"}
        )
        if method == "POST":
            request.data = b"{}"
        try:
            return self._fetch(request, 10.0)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def _api(self, method: str, path: str) -> tuple[int, bytes]:
        return self._request(method, f"{self.base_url}hub/api/{path}")

    def _server_ready(self) -> bool:
        status, body = self._api("GET", f"users/{USER}")
        if status != 200:
            return False
        server = json.loads(body).get("servers", {}).get("", {})
        return bool(server.get("ready"))

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"jupyterhub exited while waiting for {what}:\n{self.log()}")
            if condition():
                return
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}:\n{self.log()}")

    # ---- what JupyterPage uses ---------------------------------------------------------------

    def log_in(self, page: Any) -> None:
        """Log ``page`` in at the hub's login form, as a user does."""
        page.goto(f"{self.base_url}hub/login")
        page.locator("input[name=username]").fill(USER)
        page.locator("input[name=password]").fill(self.password)
        page.locator("input[type=submit], button[type=submit]").first.click()
        page.wait_for_url(f"**{BASE_URL}**", timeout=60_000)

    def notebook_url(self, name: str) -> str:
        return f"{self.page_base_url}/lab/tree/{name}?reset"

    def kernel_state(self, name: str) -> str | None:
        status, body = self._request("GET", f"{self.page_base_url}/api/sessions")
        if status != 200:
            return None
        for session in json.loads(body):
            path = str(session.get("path", ""))
            if (path == name or path.endswith("/" + name)) and session.get("kernel"):
                return str(session["kernel"].get("execution_state"))
        return None

    def log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""
