"""The signaling mode objects on their own: validation, shorthands, the widget's old keywords."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

import decart_widget as dw
from decart_widget.widget._modes import MEDIA_TRANSPORTS, MODES, SIGNALING, resolve


def hook(frame: dict[str, Any], direction: str) -> None:
    return None


def test_each_mode_is_named_as_the_front_end_knows_it() -> None:
    assert tuple(MODES) == SIGNALING == ("direct", "kernel", "proxy")
    assert [MODES[name].name for name in SIGNALING] == list(SIGNALING)
    assert dw.Direct.name == "direct" and dw.Kernel.name == "kernel" and dw.Proxy.name == "proxy"


@pytest.mark.parametrize("name", ["direct", "kernel"])
def test_strings_are_shorthands_for_the_defaults(name: str) -> None:
    assert resolve(name) == MODES[name]()


def test_the_old_keywords_fill_in_the_mode_they_belong_to() -> None:
    direct = resolve("direct", token_seconds=30, allowed_origins=["https://lab.example"])
    assert direct == dw.Direct(token_seconds=30, allowed_origins=("https://lab.example",))
    proxy = resolve("proxy", proxy_url="wss://proxy.example/", proxy_token="dwp1.abc")
    assert proxy == dw.Proxy("wss://proxy.example", "dwp1.abc")
    assert resolve("direct", token_seconds=None, proxy_url=None) == dw.Direct()  # None: not given


def test_a_mode_object_is_taken_as_it_is() -> None:
    mode = dw.Kernel(hooks=[hook])
    assert resolve(mode) is mode


@pytest.mark.parametrize(
    ("signaling", "keywords", "message"),
    [
        ("carrier-pigeon", {}, "signaling must be one of direct, kernel, proxy"),
        (42, {}, "signaling must be one of"),
        ("kernel", {"max_session_seconds": 60}, 'only applies to signaling="direct"'),
        ("kernel", {"proxy_url": "wss://p.example"}, 'only applies to signaling="proxy"'),
        ("direct", {"proxy_token": "t"}, 'proxy_token= only applies to signaling="proxy"'),
        ("proxy", {"token_seconds": 30}, 'token_seconds= only applies to signaling="direct"'),
        ("proxy", {}, "proxy_url= and proxy_token="),
        ("proxy", {"proxy_url": "wss://p.example"}, "needs the proxy's URL and a user token"),
        (dw.Direct(), {"token_seconds": 30}, r"give it to the object, dw.Direct\(token_seconds="),
        (dw.Proxy("wss://p.example", "t"), {"proxy_url": "wss://q"}, r"dw.Proxy\(url=\.\.\.\)"),
        (dw.Kernel(), {"proxy_url": "x", "proxy_token": "y"}, "proxy_token= only applies to s"),
    ],
)
def test_bad_combinations_are_refused_clearly(
    signaling: Any, keywords: dict[str, Any], message: str
) -> None:
    with pytest.raises(dw.InvalidInput, match=message):
        resolve(signaling, **keywords)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: dw.Proxy("wss://proxy.example", ""), "needs the proxy's URL and a user token"),
        (lambda: dw.Proxy("wss://proxy.example", "   "), "user token"),
        (lambda: dw.Proxy("", "dwp1.abc"), "dw.Proxy\\(url, token\\)"),
        (lambda: dw.Proxy("https://proxy.example", "dwp1.abc"), "ws:// or wss://"),
        (lambda: dw.Proxy("wss://p.example", None), "user token"),
        (lambda: dw.Direct(token_seconds=0), "token_seconds must be a whole number from 1"),
        (lambda: dw.Direct(token_seconds=3601), "from 1 to 3600"),
        (lambda: dw.Direct(token_seconds=True), "token_seconds"),
        (lambda: dw.Direct(max_session_seconds=0), "max_session_seconds must be a positive"),
        (lambda: dw.Direct(max_session_seconds=1.5), "max_session_seconds"),
        (lambda: dw.Direct(allowed_origins="https://lab.example"), "a list of origins"),
        (lambda: dw.Kernel(hooks=["not callable"]), "hooks must be callables"),
        (lambda: dw.Direct(transport="gen-c"), "transport must be one of 'livekit', 'webrtc'"),
        (lambda: dw.Kernel(transport="carrier"), "transport must be one of"),
        (lambda: dw.Proxy("wss://p.example", "t", transport="LiveKit"), "or None; got 'LiveKit'"),
    ],
)
def test_invalid_mode_arguments_are_refused_clearly(make: Any, message: str) -> None:
    with pytest.raises(dw.InvalidInput, match=message):
        make()


def test_modes_are_immutable_values_and_normalised() -> None:
    proxy = dw.Proxy("wss://proxy.example/", "dwp1.abc")
    assert proxy.url == "wss://proxy.example"
    with pytest.raises(dataclasses.FrozenInstanceError):
        proxy.url = "wss://elsewhere.example"  # type: ignore[misc]
    kernel = dw.Kernel(hooks=[hook])
    assert kernel.hooks == (hook,) and hash(kernel) == hash(dw.Kernel(hooks=(hook,)))
    assert dw.Direct(allowed_origins=["https://a.example"]).allowed_origins == (
        "https://a.example",
    )


def test_the_proxy_token_is_never_in_a_repr() -> None:
    proxy = dw.Proxy("wss://proxy.example", "dwp1.secret-user-token")
    assert "secret-user-token" not in repr(proxy) and "secret-user-token" not in str(proxy)
    assert "wss://proxy.example" in repr(proxy)


def test_the_media_transport_is_a_second_axis_every_mode_may_carry() -> None:
    assert MEDIA_TRANSPORTS == ("livekit", "webrtc")
    modes = [dw.Direct(), dw.Kernel(), dw.Proxy("wss://p.example", "t")]
    assert [mode.transport for mode in modes] == [None] * 3  # the widget's transport=
    for transport in MEDIA_TRANSPORTS:
        assert dw.Kernel(transport=transport).transport == transport
        assert dw.Direct(transport=transport) != dw.Direct()


def test_only_direct_and_kernel_need_a_backend_of_their_own() -> None:
    assert dw.Proxy("wss://p.example", "t").default_backend() is None
    for mode in (dw.Direct(), dw.Kernel()):
        with pytest.raises(dw.InvalidInput, match="needs a backend"):
            mode.attach(None, None)  # type: ignore[arg-type]


def test_the_proxy_answers_token_requests_with_the_users_token() -> None:
    proxy = dw.Proxy("wss://proxy.example", "dwp1.abc")
    attached = proxy.attach(None, None)  # type: ignore[arg-type]
    assert proxy.frontend_url(None) == "wss://proxy.example"
    assert attached.answer_token_request() == {
        "type": "token",
        "api_key": "dwp1.abc",
        "realtime_url": "wss://proxy.example",
    }
    with pytest.raises(dw.InvalidInput, match='on_signal needs signaling="kernel"'):
        attached.add_hook(hook)
    assert attached.usage == []


def test_legacy_keywords_name_real_fields() -> None:
    for mode in MODES.values():
        field_names = {f.name for f in dataclasses.fields(mode)}  # type: ignore[arg-type]
        assert set(mode.legacy_keywords.values()) <= field_names


def test_nothing_outside_the_mode_objects_compares_the_signaling_mode() -> None:
    package = Path(dw.__file__).parent
    comparison = re.compile(
        r"\bsignaling\s*(==|!=|\bin\b|\bnot in\b)|(==|!=)\s*(self\.)?signaling\b"
        r"""|\b(mode|\.name)\s*(==|!=)\s*["'](direct|kernel|proxy)["']"""
    )
    offenders = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "_modes.py"
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if comparison.search(line)
    ]
    assert offenders == []
    assert comparison.search('if mode.name != "kernel":')
