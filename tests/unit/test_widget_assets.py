"""Front-end assets sent over the comm on demand, or served by build id over HTTP
(decart_widget/widget/_assets.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from decart_widget.widget._assets import ASSETS, asset_messages, served_asset


def test_an_asset_rides_in_chunks_that_join_into_the_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 41  # 10,496 bytes
    (tmp_path / ASSETS["livekit"]).write_bytes(data)
    messages = list(asset_messages(tmp_path, "livekit", chunk_bytes=4096))
    headers = [header for header, _ in messages]
    assert [h["index"] for h in headers] == [0, 1, 2]
    assert {h["count"] for h in headers} == {3}
    assert {h["type"] for h in headers} == {"asset"} and {h["name"] for h in headers} == {"livekit"}
    assert {h["hash"] for h in headers} == {hashlib.sha256(data).hexdigest()}
    assert all(len(buffers) == 1 for _, buffers in messages)
    assert b"".join(buffers[0] for _, buffers in messages) == data


def test_a_rebuilt_asset_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / ASSETS["livekit"]
    path.write_bytes(b"export const a = 1;")
    first = next(asset_messages(tmp_path, "livekit"))[0]["hash"]
    path.write_bytes(b"export const a = 2; // rebuilt")
    assert next(asset_messages(tmp_path, "livekit"))[0]["hash"] != first


def test_unknown_and_missing_assets_get_an_asset_error(tmp_path: Path) -> None:
    ((unknown, no_buffers),) = asset_messages(tmp_path, "../../etc/passwd")
    assert unknown["type"] == "asset_error" and unknown["kind"] == "invalid_input"
    assert no_buffers == []
    ((missing, _),) = asset_messages(tmp_path, "livekit")
    assert missing["type"] == "asset_error" and missing["name"] == "livekit"
    assert "reinstall decart-widget" in missing["message"]
    ((not_a_name, _),) = asset_messages(tmp_path, ["livekit"])
    assert not_a_name["type"] == "asset_error"


def test_an_asset_is_served_only_by_its_own_build_id(tmp_path: Path) -> None:
    data = b"export const open = () => {};"
    (tmp_path / ASSETS["livekit"]).write_bytes(data)
    (tmp_path / "secret.txt").write_bytes(b"not an asset")
    build_id = hashlib.sha256(data).hexdigest()[:16]
    assert served_asset(tmp_path, "livekit", build_id) == data
    assert served_asset(tmp_path, "livekit", "0" * 16) is None  # another build
    assert served_asset(tmp_path, "livekit", build_id[:8]) is None  # not a whole id
    assert served_asset(tmp_path, "webrtc", build_id) is None  # not built here
    assert served_asset(tmp_path, "secret.txt", build_id) is None  # only names of ASSETS
    assert served_asset(tmp_path, "../livekit", build_id) is None
    (tmp_path / ASSETS["livekit"]).write_bytes(data + b" // rebuilt")
    assert served_asset(tmp_path, "livekit", build_id) is None  # the id names the old bytes
