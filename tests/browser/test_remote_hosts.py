"""The browser and the kernel on different hosts: Chromium and JupyterLab in network namespaces.

`netns_kit.Hosts` makes three hosts (browser, router, kernel). JupyterLab runs on the kernel's
host with no key, so every widget uses the widget's automatic local emulator, in the kernel's
process. The widgets autostart; the page is read as a user sees it (the pill, the banner, the
pixels of the output video) and the kernel's traitlets are printed by a cell.

* routed (a remote server on your network): the defaults, and direct signaling, show the
  transformed video with both media transports;
* behind a TCP forwarder with the kernel's host unroutable (a hub's proxy, an SSH tunnel): every
  widget ends with a message that names the cause and the ways out, well within the bounds;
* a service address the network drops silently: a bounded failure that says so;
* through a TURN server (Debian's coturn on the router, `turn_kit`) where the media cannot get
  through by itself: behind a firewall that drops UDP between the hosts, both transports in
  both signaling modes; behind the TCP forwarder, WebRTC in kernel signaling. The video goes
  Live through the relay (the pair ICE selected, read with getStats in the page); without the
  TURN server the firewall's case ends with the cause and the ways out.
* proxy signaling: ``decart-widget proxy`` on the server's host, the page with a user token;
* an SSH tunnel (Debian's OpenSSH, `ssh_kit`), SSH the only way in: the page on ``localhost``.

docs/where-it-works.md cites these tests for its rows. Needs root and ``ip netns``: skipped with
the reason otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from browser_kit import read_frames, wait_for
from conftest import CHROMIUM, CHROMIUM_ARGS
from hub_kit import JupyterHub
from hub_kit import unavailable as hub_unavailable
from jupyter_servers import JupyterPage, JupyterServer, write_notebook
from netns_kit import (
    DROPPED,
    KERNEL_IP,
    ROUTER_BROWSER_SIDE,
    TURN_IP,
    Hosts,
    TcpForwarder,
    chromium_wrapper,
    fetch_in,
    unavailable,
)
from ssh_kit import SshServer, SshTunnel
from ssh_kit import unavailable as ssh_unavailable
from turn_kit import TurnServer
from turn_kit import unavailable as turn_unavailable

import decart_widget as dw
from decart_widget.proxy import issue_token

WHY_NOT = unavailable()
pytestmark = [
    pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or ""),
    pytest.mark.timeout(300),  # the first test also starts JupyterLab and Chromium
]

#: the port of the forwarder in front of Jupyter, on the router's browser side
FORWARDED_PORT = 9999
#: the port of JupyterHub's proxy on the kernel's host
HUB_PORT = 8000
#: the kernel's key variables: unset, so the widgets use the automatic emulator
KEY_VARIABLES = ["DECART_API_KEY", "DECART_API_URL", "DECART_REALTIME_URL"]
#: a bound the failures must come well within (the front end's are 20 s; see the module doc)
FAILURE_WAIT = 45.0

#: the first cell: ``add(widget)`` keeps a widget in ``widgets`` and notes when it was made and
#: when it first settled (the kernel's clock: the figures the tests print). ``UNTIL`` says what
#: settled means: generating (``"live"``), ended with an error (``"ended"``: a message and a
#: state that is no longer trying), or either (``"settled"``).
SETUP_CELL = """\
import asyncio, json
import decart_widget as dw
loop = asyncio.get_event_loop()
def live(w):
    return w.connection_state == "generating"
def ended(w):
    return bool(w.last_error) and w.connection_state in ("disconnected", "error")
DONE = {"live": live, "ended": ended, "settled": lambda w: live(w) or ended(w)}[UNTIL]
widgets, made, seen = [], {}, {}
def add(w):
    made[id(w)] = loop.time()
    def check(change=None, w=w):
        if id(w) not in seen and DONE(w):
            seen[id(w)] = loop.time()
    w.observe(check, names=["last_error", "connection_state"])
    widgets.append(w)
    return w
"""

#: the last cell: waits (in the kernel, up to 60 s) until every widget settled, then prints
#: their traitlets and seconds to settle
STATES_CELL = """\
end = loop.time() + 60
while not all(DONE(w) for w in widgets) and loop.time() < end:
    await asyncio.sleep(0.2)  # comm messages from the page are handled meanwhile
print('STATES', json.dumps([[w.signaling, w.transport, w.source, w.connection_state,
      w.last_error, round(seen.get(id(w), loop.time()) - made[id(w)], 1)] for w in widgets]))"""


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    with Hosts() as made:
        yield made


@pytest.fixture(scope="module")
def lab(hosts: Hosts) -> Iterator[JupyterServer]:
    server = JupyterServer(
        "lab",
        ip=KERNEL_IP,
        command_prefix=hosts.kernel.exec_prefix,
        fetch=lambda url, timeout: fetch_in(hosts.kernel, url, timeout),
        unset_env=KEY_VARIABLES,
        args=["--ServerApp.allow_remote_access=True"],
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def forwarder(hosts: Hosts, lab: JupyterServer) -> Iterator[TcpForwarder]:
    forward = TcpForwarder(
        hosts.router, (ROUTER_BROWSER_SIDE, FORWARDED_PORT), (KERNEL_IP, lab.port)
    ).start()
    yield forward
    forward.stop()


@pytest.fixture(scope="module")
def remote_browser(
    playwright: Any, hosts: Hosts, lab: JupyterServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """Chromium on the browser's host; both ways to the server count as secure origins, so the
    camera works over plain http (a real deployment has https)."""
    origins = f"http://{KERNEL_IP}:{lab.port},http://{ROUTER_BROWSER_SIDE}:{FORWARDED_PORT}"
    wrapper = chromium_wrapper(hosts.browser, CHROMIUM, tmp_path_factory.mktemp("chromium"))
    browser = playwright.chromium.launch(
        executable_path=str(wrapper),
        args=[*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={origins}"],
    )
    yield browser
    browser.close()


#: an init script that keeps every RTCPeerConnection the page makes (the widget's Gen-A peer,
#: livekit-client's two), so a test can read the candidate pair ICE selected (`selected_pairs`)
KEEP_PEERS = """(() => {
  const Native = window.RTCPeerConnection;
  const peers = (window.__dwPeers = []);
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); peers.push(this); }
  };
})();"""

#: the candidate types (``[local, remote]``, the browser's side first) of the pair ICE selected
#: on each connected peer of the page
SELECTED_PAIRS = """async () => {
  const pairs = [];
  for (const pc of window.__dwPeers || []) {
    if (pc.connectionState !== "connected") continue;
    const report = await pc.getStats();
    report.forEach((entry) => {
      if (entry.type !== "transport" || !entry.selectedCandidatePairId) return;
      const pair = report.get(entry.selectedCandidatePairId);
      const local = pair && report.get(pair.localCandidateId);
      const remote = pair && report.get(pair.remoteCandidateId);
      pairs.push([local ? local.candidateType : "", remote ? remote.candidateType : ""]);
    });
  }
  return pairs;
}"""


def selected_pairs(page: Any) -> list[list[str]]:
    return list(page.evaluate(SELECTED_PAIRS))


@pytest.fixture
def remote_page(remote_browser: Any) -> Iterator[Any]:
    context = remote_browser.new_context(viewport={"width": 1280, "height": 2400})
    context.add_init_script(KEEP_PEERS)
    page = context.new_page()
    yield page
    context.close()


def open_notebook(
    lab: JupyterServer | JupyterHub, page: Any, name: str, cells: list[str]
) -> JupyterPage:
    """Open and run a notebook of ``cells`` (`widget_cells`) and the `STATES_CELL`."""
    write_notebook(lab.root_dir / name, [*cells, STATES_CELL])
    ui = JupyterPage(page, lab)  # type: ignore[arg-type]  # a hub offers what it uses
    ui.open(name)
    ui.run_all()
    return ui


def widget_cells(kinds: list[str], until: str, setup: str = "") -> list[str]:
    """Cells that make one autostarting widget of each kind (keyword arguments) and show it;
    the last cell waits until they are all ``until`` (`SETUP_CELL`)."""
    cells = [f"UNTIL = {until!r}\n{SETUP_CELL}{setup}"]
    for kind in kinds:
        cells.append(f"add(dw.RealtimeWidget(prompt='invert', autostart=True, {kind}))")
    return cells


def kernel_states(ui: JupyterPage) -> list[list[Any]] | None:
    """What the last cell printed: ``[signaling, transport, source, state, last_error,
    seconds from the widget's making to generating or its error]`` each."""
    for line in ui.output_text(-1).splitlines():
        if line.startswith("STATES "):
            return list(json.loads(line[len("STATES ") :]))
    return None


def states_when_settled(ui: JupyterPage, timeout: float = 150) -> list[list[Any]]:
    """What the last cell printed once the widgets settled (the cells take their time)."""
    wait_for(lambda: kernel_states(ui) is not None, timeout, "all cells to run and settle")
    states = kernel_states(ui)
    assert states is not None
    return states


def view(page: Any, index: int) -> Any:
    root = page.locator(".decart-widget").nth(index)
    root.scroll_into_view_if_needed()  # a user looks at it (Chromium may pause hidden videos)
    return root


def banners_when_ended(page: Any, count: int, timeout: float) -> list[str]:
    """Each view's banner text, once every view shows one (within ``timeout`` from now)."""

    def texts() -> list[str]:
        found = []
        for index in range(count):
            banner = page.locator(".decart-widget").nth(index).locator(".dw-banner")
            found.append(banner.inner_text().strip() if banner.is_visible() else "")
        return found

    def pills() -> list[str]:
        views = page.locator(".decart-widget")
        return [views.nth(index).locator(".dw-pill").inner_text() for index in range(count)]

    try:
        wait_for(lambda: all(texts()), timeout, f"all {count} views to say why", every=0.5)
    except AssertionError as failed:
        raise AssertionError(f"{failed}: banners {texts()}, pills {pills()}") from None
    return texts()


# ---- (a) routed: a remote server on your network ------------------------------------------------

#: one widget in each signaling mode on each media transport
ROUTED_KINDS = [
    'source="synthetic", transport="webrtc"',  # kernel signaling: the default
    'source="synthetic", transport="livekit"',
    'source="synthetic", transport="livekit", signaling="direct"',
    'source="synthetic", transport="webrtc", signaling="direct"',
]


def test_routed_defaults_show_the_transformed_video_with_both_transports(
    hosts: Hosts, lab: JupyterServer, remote_page: Any
) -> None:
    hosts.route(True)
    lab.page_base_url = f"http://{KERNEL_IP}:{lab.port}"
    ui = open_notebook(lab, remote_page, "routed.ipynb", widget_cells(ROUTED_KINDS, "live"))
    assert_live(ui, remote_page, ROUTED_KINDS)


#: (signaling, transport) of each of `ROUTED_KINDS`
ROUTED_MODES = [
    ["kernel", "webrtc"],
    ["kernel", "livekit"],
    ["direct", "livekit"],
    ["direct", "webrtc"],
]


def assert_live(
    ui: JupyterPage,
    page: Any,
    kinds: list[str],
    modes: list[list[str]] = ROUTED_MODES,
    setup: str = "routed",
) -> None:
    """Every view shows Live and a transformed video; the kernel sees them generating, in
    the signaling modes and on the transports of ``modes``. The kernel's states, returned."""
    remote_page = page
    for index in range(len(kinds)):
        root = view(remote_page, index)
        pill = root.locator(".dw-pill")
        wait_for(lambda pill=pill: pill.inner_text() == "Live", 40, f"widget {index} to go Live")

        def output_shows(index: int = index) -> bool:
            frames = read_frames(remote_page, index)
            return bool(frames.ready and frames.output and frames.output.peak > 50)

        wait_for(output_shows, 20, f"widget {index}'s transformed video", every=0.2)
        assert not root.locator(".dw-banner").is_visible(), root.locator(".dw-banner").inner_text()
    states = states_when_settled(ui)
    for state in states:
        print(f"{setup}, {state[0]}/{state[1]}/{state[2]}: live {state[5]} s after it was made")
    assert all(state[3] == "generating" for state in states), states
    assert [state[:2] for state in states] == modes


# ---- JupyterHub: its proxy and its own base URL in front of the user's server ------------------

HUB_WHY_NOT = hub_unavailable()


@pytest.fixture(scope="module")
def hub(hosts: Hosts) -> Iterator[JupyterHub]:
    if HUB_WHY_NOT is not None:
        pytest.skip(HUB_WHY_NOT)
    made = JupyterHub(
        KERNEL_IP,
        HUB_PORT,
        command_prefix=hosts.kernel.exec_prefix,
        fetch=lambda request, timeout: hosts.kernel.call(_open, request, timeout),
    )
    with made:
        yield made


def _open(request: Any, timeout: float) -> tuple[int, bytes]:
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status), bytes(response.read())


def test_through_jupyterhub_the_defaults_show_the_transformed_video(
    hosts: Hosts, hub: JupyterHub, remote_page: Any
) -> None:
    hosts.route(True)
    hub.log_in(remote_page)
    ui = open_notebook(hub, remote_page, "hub.ipynb", widget_cells(ROUTED_KINDS, "live"))
    assert remote_page.url.startswith(f"http://{KERNEL_IP}:{HUB_PORT}/hub-prefix/user/")
    assert_live(ui, remote_page, ROUTED_KINDS, setup="through JupyterHub")


# ---- proxy signaling: the platform's proxy on the server's host ---------------------------------

#: the proxy's and its upstream emulator's ports on the kernel's host (a namespace of their own)
PROXY_PORT = 8787
UPSTREAM_PORT = 8765
PROXY_SECRET = "remote-hosts-proxy-secret"


@pytest.fixture(scope="module")
def remote_proxy(hosts: Hosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``decart-widget proxy`` on the kernel's host in front of an emulator there (the service
    a platform's proxy fronts; the proxy dials it at the host's address, so the LiveKit room it
    names is on that address too). The proxy's URL for the browser."""
    upstream = hosts.kernel.call(
        lambda: dw.Emulator(
            host="0.0.0.0", port=UPSTREAM_PORT, api_key="dct_remote_upstream"
        ).start()  # its loop thread is born in the kernel's namespace
    )
    env = dict(os.environ)
    env.pop("DECART_API_KEY", None)
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            *hosts.kernel.exec_prefix, sys.executable, "-m", "decart_widget.proxy",
            "--host", "0.0.0.0", "--port", str(PROXY_PORT),
            "--upstream-url", f"ws://{KERNEL_IP}:{UPSTREAM_PORT}", "--api-key", upstream.api_key,
            "--secret", PROXY_SECRET, "--heartbeat", "0", "--log-level", "warning",
            "--ledger", str(tmp_path_factory.mktemp("proxy-ledger") / "usage.sqlite3"),
        ],
        stdout=subprocess.PIPE, stderr=log, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # once it listens (or dies)
        if "listening on" not in line:
            log.seek(0)
            raise AssertionError(f"the proxy did not start: {line}{log.read()}")
        yield f"ws://{KERNEL_IP}:{PROXY_PORT}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)
        if process.stdout is not None:
            process.stdout.close()
        log.close()
        upstream.stop()


def test_routed_proxy_signaling_shows_the_transformed_video_with_both_transports(
    hosts: Hosts, lab: JupyterServer, remote_proxy: str, remote_page: Any
) -> None:
    """The page on the browser's host opens the platform's proxy on the server's host with a
    user token only; both transports go Live (a LiveKit room where the service names it)."""
    hosts.route(True)
    lab.page_base_url = f"http://{KERNEL_IP}:{lab.port}"
    token = issue_token("alice", PROXY_SECRET)
    setup = f"PROXY = dw.Proxy(url={remote_proxy!r}, token={token!r})\n"
    kinds = [
        'source="synthetic", transport="webrtc", signaling=PROXY',
        'source="synthetic", transport="livekit", signaling=PROXY',
    ]
    ui = open_notebook(lab, remote_page, "proxy.ipynb", widget_cells(kinds, "live", setup))
    modes = [["proxy", "webrtc"], ["proxy", "livekit"]]
    assert_live(ui, remote_page, kinds, modes, setup="proxy on the server's host")


# ---- (b) behind a forwarder, the kernel's host unroutable ---------------------------------------

WAYS_OUT = ("DECART_API_KEY", "Jupyter")


def test_behind_a_forwarder_every_widget_says_why_within_the_bounds(
    hosts: Hosts, lab: JupyterServer, forwarder: TcpForwarder, remote_page: Any
) -> None:
    hosts.route(False)
    lab.page_base_url = f"http://{ROUTER_BROWSER_SIDE}:{FORWARDED_PORT}"
    kinds = [
        'source="synthetic", transport="webrtc"',  # kernel signaling: the default
        'source="camera", transport="webrtc"',
        'source="synthetic", transport="livekit"',
        'source="camera", transport="livekit"',
        'source="synthetic", transport="livekit", signaling="direct"',
        'source="camera", transport="webrtc", signaling="direct"',
    ]
    ui = open_notebook(lab, remote_page, "forwarded.ipynb", widget_cells(kinds, "ended"))
    assert_each_says_why(ui, remote_page, kinds)


def assert_each_says_why(ui: JupyterPage, page: Any, kinds: list[str]) -> None:
    """Every widget ended, well within the bounds, with a message that names the cause (the
    local emulator out of reach) and the ways out, in the kernel and in its view."""
    banners = banners_when_ended(page, len(kinds), FAILURE_WAIT)
    states = states_when_settled(ui)
    for text, state, kind in zip(banners, states, kinds, strict=True):
        signaling, transport, source, connection, error, seconds = state
        print(f"{signaling}/{transport}/{source}: {seconds} s: {error}")
        assert connection not in ("connecting", "reconnecting", "generating"), (kind, state)
        assert "emulator" in error and all(way in error for way in WAYS_OUT), (kind, error)
        assert "connection lost" not in error.lower(), (kind, error)
        assert "(error)" not in error, (kind, error)
        assert error.split(".")[0].lower() in text.lower(), (kind, text, error)


# ---- through a TURN server where the media cannot get through by itself ------------------------

TURN_WHY_NOT = turn_unavailable()


@pytest.fixture(scope="module")
def turn(hosts: Hosts) -> Iterator[TurnServer]:
    """coturn on the router's `TURN_IP`, which both hosts reach (a public TURN server)."""
    if TURN_WHY_NOT is not None:
        pytest.skip(TURN_WHY_NOT)
    with TurnServer(hosts.router, TURN_IP) as server:
        yield server


def turn_setup(turn: TurnServer) -> str:
    """Notebook code: ``fresh_turn``, a function that mints time-limited credentials for the
    TURN server (coturn's ``use-auth-secret``, as a TURN provider's API does), and ``TURN``, a
    list it returned (a username and a password, as one copies them from a provider)."""
    return (
        "import base64, hashlib, hmac, time\n"
        f"TURN_URL, SECRET = {turn.url!r}, {turn.secret!r}\n"
        "def fresh_turn():\n"
        "    username = f'{int(time.time()) + 600}:notebook'\n"
        "    digest = hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()\n"
        "    password = base64.b64encode(digest).decode()\n"
        "    return [{'urls': TURN_URL, 'username': username, 'credential': password}]\n"
        "TURN = fresh_turn()\n"
    )


def assert_relayed(page: Any, views: int) -> None:
    """Every connected peer of the page (at least one per view) carries its media through the
    TURN server: a relay candidate on one side of the pair ICE selected."""
    pairs = selected_pairs(page)
    print(f"selected candidate pairs (browser, emulator): {pairs}")
    assert len(pairs) >= views, pairs
    assert all("relay" in pair for pair in pairs), pairs


#: (signaling, transport) as in `ROUTED_KINDS`, each given the TURN server (a list or a function)
TURN_KINDS = [
    'source="synthetic", transport="webrtc", ice_servers=TURN',  # kernel signaling: the default
    'source="synthetic", ice_servers=fresh_turn',  # LiveKit: the default transport
    'source="synthetic", transport="livekit", signaling="direct", ice_servers=TURN',
    'source="synthetic", transport="webrtc", signaling="direct", ice_servers=fresh_turn',
]


def test_through_a_turn_server_the_video_crosses_a_firewall_that_drops_udp(
    hosts: Hosts, lab: JupyterServer, turn: TurnServer, remote_page: Any
) -> None:
    """The browser reaches the kernel's host by TCP only (signaling and LiveKit's signal
    socket pass, the media's UDP does not): with a TURN server, both transports go Live in
    both signaling modes, through the relay."""
    hosts.route(True)
    hosts.block_udp(True)
    try:
        lab.page_base_url = f"http://{KERNEL_IP}:{lab.port}"
        cells = widget_cells(TURN_KINDS, "live", turn_setup(turn))
        ui = open_notebook(lab, remote_page, "turn-firewall.ipynb", cells)
        assert_live(ui, remote_page, TURN_KINDS, setup="through TURN, UDP dropped")
        assert_relayed(remote_page, len(TURN_KINDS))
    finally:
        hosts.block_udp(False)


def test_without_a_turn_server_the_firewall_that_drops_udp_is_named_with_the_ways_out(
    hosts: Hosts, lab: JupyterServer, remote_page: Any
) -> None:
    """The control of the test above: the same firewall, no TURN server. Signaling and
    LiveKit's signal socket connect, the media cannot: each widget ends with the cause and
    the ways out (the emulator's 15 s media bound, or the browser's own failure first)."""
    hosts.route(True)
    hosts.block_udp(True)
    try:
        lab.page_base_url = f"http://{KERNEL_IP}:{lab.port}"
        kinds = ['source="synthetic", transport="webrtc"', 'source="synthetic"']
        cells = widget_cells(kinds, "ended")
        assert_each_says_why(
            open_notebook(lab, remote_page, "firewall.ipynb", cells), remote_page, kinds
        )
    finally:
        hosts.block_udp(False)


def test_behind_a_forwarder_a_turn_server_carries_the_webrtc_media(
    hosts: Hosts, lab: JupyterServer, forwarder: TcpForwarder, turn: TurnServer, remote_page: Any
) -> None:
    """Test (b)'s setup, where the media cannot get through (the kernel's host unroutable, the
    page through a TCP forwarder), with a TURN server both reach: WebRTC in kernel signaling
    (all of it through the comm) goes Live through the relay, with a camera and without."""
    hosts.route(False)
    lab.page_base_url = f"http://{ROUTER_BROWSER_SIDE}:{FORWARDED_PORT}"
    kinds = [
        'source="synthetic", transport="webrtc", ice_servers=TURN',
        'source="camera", transport="webrtc", ice_servers=fresh_turn',
    ]
    cells = widget_cells(kinds, "live", turn_setup(turn))
    ui = open_notebook(lab, remote_page, "turn-forwarded.ipynb", cells)
    modes = [["kernel", "webrtc"]] * len(kinds)
    assert_live(ui, remote_page, kinds, modes, setup="through TURN, behind a forwarder")
    assert_relayed(remote_page, len(kinds))


# ---- an SSH tunnel: the page on localhost, only SSH reaches the server -------------------------

SSH_WHY_NOT = ssh_unavailable()
#: the port the router forwards to the kernel's host's sshd (the only way in), and the tunnel's
#: local port on the browser's host (``ssh -L 8888:...``)
SSH_FORWARDED_PORT = 2222
TUNNEL_PORT = 8888


@pytest.fixture(scope="module")
def ssh_server(hosts: Hosts) -> Iterator[SshServer]:
    if SSH_WHY_NOT is not None:
        pytest.skip(SSH_WHY_NOT)
    with SshServer(hosts.kernel, KERNEL_IP) as server:
        yield server


def test_through_an_ssh_tunnel_webrtc_with_a_turn_server_works_and_the_rest_says_why(
    hosts: Hosts, lab: JupyterServer, ssh_server: SshServer, turn: TurnServer, remote_page: Any
) -> None:
    """``ssh -L 8888:<server>:<port>`` from the browser's host, SSH the only way in (the kernel's
    host unroutable, its port 22 forwarded): the page is on ``localhost`` and cannot tell it is
    remote. WebRTC in kernel signaling with a TURN server goes Live through the relay; the
    defaults (LiveKit: its room's socket goes to ``localhost:<the emulator's port>``) and
    WebRTC without a TURN server end within the bounds with the cause and the ways out (the
    page's as a condition: if it is tunnelled), never "Connection lost"."""
    hosts.route(False)
    ssh_port = TcpForwarder(
        hosts.router, (ROUTER_BROWSER_SIDE, SSH_FORWARDED_PORT), (KERNEL_IP, 22)
    ).start()
    via = (ROUTER_BROWSER_SIDE, SSH_FORWARDED_PORT)
    try:
        with SshTunnel(hosts.browser, ssh_server, via, TUNNEL_PORT, (KERNEL_IP, lab.port)):
            lab.page_base_url = f"http://localhost:{TUNNEL_PORT}"
            kinds = [
                'source="synthetic", transport="webrtc", ice_servers=fresh_turn',
                'source="synthetic"',  # the defaults: kernel signaling, LiveKit
                'source="synthetic", transport="webrtc"',
                'source="synthetic", transport="webrtc", signaling="direct"',
            ]
            cells = widget_cells(kinds, "settled", turn_setup(turn))
            ui = open_notebook(lab, remote_page, "ssh-tunnel.ipynb", cells)
            states = states_when_settled(ui)
            for state in states:
                print(
                    f"SSH tunnel, {state[0]}/{state[1]}: {state[3]} after {state[5]} s {state[4]}"
                )
            relayed, defaults, plain, direct = states
            assert relayed[3] == "generating", relayed
            assert_relayed(remote_page, 1)
            for state in (defaults, plain, direct):
                assert state[3] in ("disconnected", "error") and state[4], state
                assert "connection lost" not in state[4].lower(), state
            # the page on localhost says the cause and the ways out, saying when they apply
            # (js/src/reach.ts), with the way out for a LiveKit room
            assert "if this page comes from another host" in defaults[4], defaults
            assert 'transport="webrtc"' in defaults[4] and "DECART_API_KEY" in defaults[4], defaults
            # direct signaling dials the emulator at localhost: retried, then said the same way
            assert "if this page comes from another host" in direct[4], direct
            # the emulator's own bound names the cause and the ways out
            assert "no media path between the client and the emulator" in plain[4], plain
            assert all(way in plain[4] for way in (*WAYS_OUT, "TURN")), plain
    finally:
        ssh_port.stop()


# ---- (c) a service address that drops every packet ----------------------------------------------

MODES = ("direct", "kernel")


def test_an_address_that_drops_everything_fails_within_the_bound_saying_so(
    hosts: Hosts, lab: JupyterServer, remote_page: Any
) -> None:
    hosts.route(True)
    lab.page_base_url = f"http://{KERNEL_IP}:{lab.port}"
    setup = (
        "minter = dw.Emulator().start()  # mints the client tokens; its URL is never used\n"
        "service = dw.Decart(api_key=minter.api_key, api_url=minter.api_url,\n"
        f"                   realtime_url='ws://{DROPPED}:8765')"
    )
    kinds = [f"source='synthetic', backend=service, signaling={mode!r}" for mode in MODES]
    ui = open_notebook(lab, remote_page, "dropped.ipynb", widget_cells(kinds, "ended", setup))
    banners = banners_when_ended(remote_page, len(kinds), FAILURE_WAIT)
    states = states_when_settled(ui)
    for text, state in zip(banners, states, strict=True):
        print(f"{state[0]}: {state[5]} s: {state[4]}")
        assert "could not connect" in text.lower(), text
        assert state[3] not in ("connecting", "reconnecting"), state
        assert "could not connect" in state[4].lower(), state
        assert "connection lost" not in state[4].lower(), state
