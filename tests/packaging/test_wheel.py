"""The built wheel installs into a clean virtualenv, imports, and carries the front-end bundle."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        timeout=600,
    )
    (built,) = out.glob("decart_widget-*.whl")
    return built


def test_wheel_contains_the_bundle_and_no_sources_of_the_front_end(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "decart_widget/widget/static/widget.js" in names
    assert "decart_widget/widget/static/widget.css" in names
    assert "decart_widget/protocol/constants.json" in names  # read at import time
    assert "decart_widget/widget/static/livekit.js" in names  # sent to the page on demand
    assert "decart_widget/widget/static/webrtc.js" in names
    assert not any(name.startswith("js/") or "node_modules" in name for name in names)
    bundle = zipfile.ZipFile(wheel).read("decart_widget/widget/static/widget.js")
    assert b"export" in bundle and len(bundle) > 10_000


def test_wheel_enables_the_jupyter_server_extension(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    config = [
        n for n in archive.namelist() if n.endswith("jupyter_server_config.d/decart_widget.json")
    ]
    assert config and config[0].split("/")[1] == "data", config  # installed under sys.prefix
    enabled = json.loads(archive.read(config[0]))["ServerApp"]["jpserver_extensions"]
    assert enabled == {"decart_widget": True}


def test_wheel_installs_and_imports_in_a_clean_venv(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True,
        timeout=900,
    )
    probe = (
        "import decart_widget as dw, pathlib;"
        "from decart_widget.widget._widget import STATIC;"
        "assert (STATIC / 'widget.js').is_file(), STATIC;"
        "assert dw.models.get('lucy-2.1').width == 1088;"
        "w = dw.RealtimeWidget(backend=dw.Decart(api_key='dct_probe'));"
        "assert 'export' in pathlib.Path(w._esm).read_text() if isinstance(w._esm, pathlib.Path)"
        " else 'export' in w._esm;"
        "print(dw.__version__, dw.__file__)"
    )
    result = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert str(venv) in result.stdout  # imported from the venv, not the checkout
    cli = subprocess.run(
        [str(venv / "bin" / "decart-widget"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert cli.returncode == 0 and "emulator" in cli.stdout
