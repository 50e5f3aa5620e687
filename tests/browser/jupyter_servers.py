"""Run a real JupyterLab 4 or Notebook 7 server for a test, isolated from the user's setup.

`JupyterServer` starts ``python -m jupyterlab`` / ``python -m notebook`` on a free port with a
known token, a temporary root directory and temporary config, runtime and settings directories
(so no user workspace or setting leaks in), and the environment the test gives the kernel.
JupyterLab cell windowing is switched off so every cell's output is in the page. `JupyterPage`
drives the shared JupyterLab UI of both applications: open a notebook, run all cells, run one cell.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
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

#: where the repository lives, so a kernel imports this checkout of decart_widget
REPO = Path(__file__).resolve().parents[2]

APPS = {"lab": "jupyterlab", "notebook": "notebook"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kernels_use(emulator: Any) -> dict[str, str]:
    """The environment that points a server's kernels at ``emulator`` (a `dw.Emulator`), as a
    user's ``DECART_*`` variables point them at Decart."""
    return {
        "DECART_API_KEY": emulator.api_key,
        "DECART_API_URL": emulator.api_url,
        "DECART_REALTIME_URL": emulator.realtime_url,
    }


def write_notebook(path: Path, cells: list[str], *, markdown: str | None = None) -> None:
    """A minimal nbformat 4 notebook of code cells (plus an optional first markdown cell)."""
    nb_cells: list[dict[str, Any]] = []
    if markdown:
        nb_cells.append(
            {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": markdown}
        )
    for index, source in enumerate(cells):
        nb_cells.append(
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{index}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
        )
    path.write_text(json.dumps(_notebook(nb_cells), indent=1))


def _notebook(cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
                "name": "python3",
            },
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


class JupyterServer:
    """``with JupyterServer("lab", env={...}) as server:`` -- ``server.url(path)`` opens it.

    ``args`` are added to the server's command line (``--ServerApp.x=y``). On another host (a
    network namespace, tests/browser/netns_kit.py): ``ip`` is the address it listens on and the
    test reaches it at, ``command_prefix`` runs it there (``ip netns exec ...``), ``fetch`` makes
    the test's own HTTP requests from there (``url, timeout -> (status, body)``), and
    ``page_base_url`` is where the browser finds it (``notebook_url``); ``unset_env`` are names
    the kernel must not inherit.
    """

    def __init__(
        self,
        app: str = "lab",
        *,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        startup_timeout: float = 60.0,
        ip: str = "127.0.0.1",
        command_prefix: list[str] | None = None,
        fetch: Callable[[str, float], tuple[int, bytes]] | None = None,
        unset_env: list[str] | None = None,
    ) -> None:
        if app not in APPS:
            raise ValueError(f"app must be one of {sorted(APPS)}; got {app!r}")
        self.app = app
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.ip = ip
        self.base_url = f"http://{ip}:{self.port}"
        #: where the browser opens the server (another address when a forwarder is in front)
        self.page_base_url = self.base_url
        self._command_prefix = list(command_prefix or [])
        self._fetch = fetch or _fetch
        self._unset_env = list(unset_env or [])
        self._extra_env = dict(env or {})
        self._extra_args = list(args or [])
        self._startup_timeout = startup_timeout
        self._tmp = Path(tempfile.mkdtemp(prefix=f"dw-jupyter-{app}-"))
        self.root_dir = self._tmp / "root"
        self.root_dir.mkdir()
        self._log_path = self._tmp / "server.log"
        self._log: Any = None
        self._process: subprocess.Popen[bytes] | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> JupyterServer:
        dirs = {name: self._tmp / name for name in ("config", "runtime", "settings", "ws", "ipy")}
        for path in dirs.values():
            path.mkdir()
        tracker = dirs["settings"] / "@jupyterlab" / "notebook-extension"
        tracker.mkdir(parents=True)
        (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
        news = dirs["settings"] / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True)
        (news / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(dirs["config"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
            "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
            "JUPYTERLAB_WORKSPACES_DIR": str(dirs["ws"]),
            "IPYTHONDIR": str(dirs["ipy"]),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
            ),
            **self._extra_env,
        }
        for name in self._unset_env:
            env.pop(name, None)
        command = [
            *self._command_prefix,
            sys.executable,
            "-m",
            APPS[self.app],
            "--no-browser",
            f"--port={self.port}",
            f"--ip={self.ip}",
            f"--ServerApp.token={self.token}",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.port_retries=0",
            *self._extra_args,
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        self._log = self._log_path.open("wb")
        self._process = subprocess.Popen(
            command, env=env, cwd=self.root_dir, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        status = f"{self.base_url}/api/status?token={self.token}"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"jupyter {self.app} exited early:\n{self.log()}")
            try:
                if self._fetch(status, 2.0)[0] == 200:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"jupyter {self.app} did not start in time:\n{self.log()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()  # SIGTERM: the server shuts its kernels down
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> JupyterServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- use ---------------------------------------------------------------------------------

    def add_file(self, name: str, source: Path | None = None, text: str | None = None) -> Path:
        target = self.root_dir / name
        if source is not None:
            shutil.copy(source, target)
        else:
            target.write_text(text or "")
        return target

    def notebook_url(self, name: str) -> str:
        """The URL that opens notebook ``name`` in this app, token included."""
        if self.app == "lab":
            return f"{self.page_base_url}/lab/tree/{name}?reset&token={self.token}"
        return f"{self.page_base_url}/notebooks/{name}?token={self.token}"

    @property
    def pid(self) -> int:
        """The server process's id."""
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.pid

    def kernel_state(self, name: str) -> str | None:
        """The execution state of the kernel of notebook ``name`` (None: no session yet)."""
        url = f"{self.base_url}/api/sessions?token={self.token}"
        try:
            sessions = json.loads(self._fetch(url, 5.0)[1])
        except (urllib.error.URLError, OSError, ValueError):
            return None
        for session in sessions:
            path = str(session.get("path", ""))
            if (path == name or path.endswith("/" + name)) and session.get("kernel"):
                return str(session["kernel"].get("execution_state"))
        return None

    def log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def _fetch(url: str, timeout: float) -> tuple[int, bytes]:
    """GET ``url``: its status and body."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return int(response.status), bytes(response.read())


class JupyterPage:
    """The JupyterLab UI (JupyterLab 4 and Notebook 7 share it) in a Playwright page."""

    def __init__(self, page: Any, server: JupyterServer) -> None:
        self.page = page
        self.server = server

    def open(self, name: str, timeout: float = 60.0) -> None:
        """Open notebook ``name`` and wait until its kernel is idle."""
        self.page.goto(self.server.notebook_url(name))
        self.page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=timeout * 1000)
        deadline = time.monotonic() + timeout
        accept = self.page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
        while self.server.kernel_state(name) != "idle":
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the kernel of {name} did not become idle:\n{self.server.log()}"
                )
            if accept.count() and accept.first.is_visible():
                accept.first.click()  # "Select Kernel": take the notebook's own kernel
            time.sleep(0.2)

    def run_all(self) -> None:
        """Run > Run All Cells, from the menu bar."""
        self.page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        self.page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()

    def kernel_menu(self, command: str, *, confirm: bool = True) -> None:
        """Kernel > ``command`` (e.g. ``kernelmenu:restart``) from the menu bar, confirming the
        dialog it opens (``confirm``), as a user does."""
        self.page.locator(".lm-MenuBar-item", has_text="Kernel").first.click()
        self.page.locator(f".lm-Menu-item[data-command='{command}']").click()
        if not confirm:
            return
        accept = self.page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
        accept.first.wait_for(timeout=10_000)
        accept.first.click()

    def close_tab(self, name: str) -> None:
        """Close the notebook's tab (keeping its kernel running), as its tab's close icon does."""
        tab = self.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=name)
        tab.locator(".lm-TabBar-tabCloseIcon").click()
        discard = self.page.locator(".jp-Dialog .jp-Dialog-button", has_text="Discard")
        deadline = time.monotonic() + 10
        while tab.count():
            if time.monotonic() > deadline:
                raise AssertionError(f"the tab of {name} did not close")
            if discard.count() and discard.first.is_visible():
                discard.first.click()  # unsaved outputs: close without saving
            time.sleep(0.1)

    def cells(self) -> Any:
        return self.page.locator(".jp-Notebook .jp-CodeCell")

    def run_cell(self, index: int) -> None:
        """Select code cell ``index`` (negative: from the end) and run it in place (Ctrl+Enter)."""
        cells = self.cells()
        cell = cells.nth(cells.count() + index if index < 0 else index)
        cell.locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Control+Enter")

    def output_text(self, index: int) -> str:
        cells = self.cells()
        cell = cells.nth(cells.count() + index if index < 0 else index)
        return str(cell.locator(".jp-OutputArea").inner_text())


def printed(ui: JupyterPage, index: int, tag: str) -> dict[str, Any] | None:
    """The JSON that cell ``index`` printed after ``tag`` (a ``report(tag, ...)`` line), if any."""
    for line in ui.output_text(index).splitlines():
        if line.startswith(tag + " "):
            return dict(json.loads(line[len(tag) + 1 :]))
    return None


def run(ui: JupyterPage, index: int, tag: str, timeout: float) -> dict[str, Any]:
    """Run cell ``index`` and wait until it prints its ``tag`` line; that line's JSON."""
    from browser_kit import wait_for

    ui.run_cell(index)
    return dict(
        wait_for(
            lambda: printed(ui, index, tag),
            timeout,
            f"cell {index} to print {tag}; it shows: {ui.output_text(index)!r}",
            every=0.2,
        )
    )
