"""One ``/v1/stream`` session, from the server's side of docs/protocol.md.

A `StreamSession` starts once `app` has admitted the connection (key, model, origin, concurrency).
It reads client messages in order (`parse_client`), keeps the model state (prompt, reference image,
the compiled effect), and sends acks, ``generation_started``, integer cumulative
``generation_tick``s and ``generation_ended``. The client's first media message picks the
transport, recorded as `EmulatedSession.transport`:

* ``offer`` -> Gen-A ("webrtc"): answered through a `MediaPeer`, then ``session_id``. Both
  handshake orders work: initial state then offer, or offer then state. ICE candidates may come
  trickled (dicts, bare strings, ``null``), before or after the offer.
* ``livekit_join`` -> Gen-B ("livekit"): a `RoomLink` queues the session if needed, opens its
  room in the emulator's room server and sends ``livekit_room_info`` (see `gen_b`).

The other transport's messages are then answered with an ``error`` and otherwise ignored.

* ``prompt`` -> ``prompt_ack`` (echoing the text); ``set_image`` -> ``set_image_ack`` (refused for
  an ``image_ref``: Decart's Files API is not emulated). A refused
  prompt/image is acked ``success: false`` with the reason and the state is left as it was.
  ``set_image`` replaces the whole state: its image (null: clear) and its prompt (null: no
  prompt); a ``set_image`` without a ``prompt`` key at all keeps the current prompt (the JS SDK's
  ``setImageBase64(image)`` sends none).
* Generation starts when the media is connected (the peer connection, or the user's video in the
  room): ``generation_started``, then one tick
  every ``tick_seconds`` whose ``seconds`` counts ticks. Each tick charges one second of credits
  to the account (the permanent key behind the credential).

Every end goes through `EndRequest` and is carried out by the task running `run`:

========================  ====================  =============================  ====================
cause                     ``generation_ended``  close                          record end_reason
========================  ====================  =============================  ====================
client closed the socket  --                    (the client's)                 disconnect
credits exhausted         insufficient_credits  1000 "insufficient_credits"    insufficient_credits
``maxSessionDuration``    timeout               1000 "session_duration_limit"  timeout
peer connection failed    error                 1011 "peer connection failed"  error
(Gen-B: room media failed) (``error`` first)
no media connection       error                 1011 "peer connection failed"  error
within                    (``error`` first)
``media_connect_seconds``
the user left the room    disconnect            1000 "left the room"           left_room
offer refused (fault)     -- (``error`` first)  1011 "offer refused"           offer_refused
offer unusable            -- (``error`` first)  1011 "invalid offer"           invalid_offer
the emulator's ``stop()`` --                    1001 "server_shutdown"         server_shutdown
``drop_socket_after``,    --                    TCP abort (client sees 1006)   dropped
``drop_connections()``
========================  ====================  =============================  ====================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import WSMsgType, web

from ..protocol._errors import ProtocolError
from ..protocol.messages import (
    Answer,
    Error,
    GenerationEnded,
    GenerationStarted,
    GenerationTick,
    IceCandidate,
    LivekitJoin,
    Offer,
    Prompt,
    PromptAck,
    ServerMessage,
    SessionId,
    SetImage,
    SetImageAck,
    encode,
    parse_client,
)
from ._config import Services
from ._effects import Effect, build_effect
from ._gen_b import RoomLink
from ._images import ImageRejected, ReferenceImage, prepare
from ._media import MediaPeer
from ._moderation import PROMPT_REJECTED
from ._tokens import Credential

log = logging.getLogger("decart_widget.emulator.stream")

CLOSE_TIMEOUT = 2.0
#: A prompt holding a lone surrogate (``"\\ud800"`` is valid JSON, but no text): refused.
INVALID_PROMPT_TEXT = "Invalid prompt: not valid Unicode text (a lone surrogate)"


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class Admission:
    """An admitted connection: who, for which model, from where."""

    credential: Credential
    model: str
    origin: str | None
    resolution: str | None
    user_agent: str | None


@dataclass(frozen=True)
class EndRequest:
    reason: str
    generation_ended: str | None = None
    close_code: int = 1000
    close_message: str = ""
    abort: bool = False
    #: an ``error`` message sent before ``generation_ended``, so the client can say why
    error: str | None = None


DISCONNECT = EndRequest("disconnect")
SHUTDOWN = EndRequest("server_shutdown", close_code=1001, close_message="server_shutdown")
DROPPED = EndRequest("dropped", abort=True)
MEDIA_FAILED = EndRequest("error", "error", 1011, "peer connection failed")
LEFT_ROOM = EndRequest("left_room", "disconnect", 1000, "left the room")


def media_failed(seconds: float | None, ice_servers: Sequence[Mapping[str, Any]]) -> EndRequest:
    """`MEDIA_FAILED` with the reason: no media path (within ``seconds``, the bound, when that
    is what ended it), and the ways out; with a TURN server among the session's ``ice_servers``,
    that it did not carry the media either."""
    within = f"no media connection within {seconds:g} s, " if seconds is not None else ""
    turn = any(
        url.startswith(("turn:", "turns:")) for server in ice_servers for url in server["urls"]
    )
    ways_out = (
        "not even through the TURN server it was given: check that both the browser and the"
        " kernel's host reach it, set DECART_API_KEY to use the real service, or run Jupyter"
        " locally"
        if turn
        else "an emulator next to a remote kernel is out of the browser's reach: set"
        " DECART_API_KEY to use the real service, run Jupyter locally, or give ice_servers with"
        " a TURN server both reach"
    )
    return replace(
        MEDIA_FAILED,
        error=(
            f"peer connection failed: {within}no media path between the client and the emulator"
            f" ({ways_out})"
        ),
    )


WEBRTC = "webrtc"
LIVEKIT = "livekit"


#: JS SDK's ``set_image {image_ref}`` points at Decart's Files API, which is not emulated.
IMAGE_REF_UNSUPPORTED = (
    "image_ref (Decart's Files API) is not supported by the local emulator: send image_data"
)


def _names_an_image_ref(frame: str) -> bool:
    """True for a set_image frame with an ``image_ref`` (small frames: no image data in them)."""
    if '"image_ref"' not in frame:
        return False
    body = json.loads(frame)
    return isinstance(body, dict) and body.get("image_ref") is not None


class StreamSession:
    def __init__(
        self,
        services: Services,
        ws: web.WebSocketResponse,
        request: web.Request,
        admission: Admission,
        session_id: str,
    ) -> None:
        self.services = services
        self.ws = ws
        self.request = request
        self.admission = admission
        self.id = session_id
        self.account_key = admission.credential.account_key
        grant = admission.credential.grant
        self.max_seconds = grant.max_session_duration if grant is not None else None
        #: the ICE servers of this session's media peers: those bound to its client token
        #: (`Emulator.bind_ice_servers`), else the emulator's own
        self.ice_servers = (
            grant.ice_servers
            if grant is not None and grant.ice_servers is not None
            else services.config.ice_servers
        )
        self.log = services.recorder.open(
            session_id,
            model=admission.model,
            key_kind=admission.credential.kind,
            origin=admission.origin,
            resolution=admission.resolution,
            user_agent=admission.user_agent,
            ice_server_urls=[url for server in self.ice_servers for url in server["urls"]],
        )
        self._prompt: str | None = None
        self._reference: ReferenceImage | None = None
        self._effect: Effect | None = None
        self._peer: MediaPeer | None = None
        self._room_link: RoomLink | None = None
        #: "webrtc" (Gen-A) or "livekit" (Gen-B) once the first media message chose.
        self.transport: str | None = None
        #: Set once any prompt or set_image was answered (Gen-B room info may wait for it).
        self.state_answered = asyncio.Event()
        self._early_candidates: list[dict[str, Any] | None] = []
        self._session_id_sent = False
        self._generating = False
        self._media_deadline: asyncio.Task[None] | None = None
        self._seconds = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._acks: asyncio.Queue[tuple[float, ServerMessage]] = asyncio.Queue()
        self._ended: asyncio.Future[EndRequest] = asyncio.get_running_loop().create_future()
        self.done = asyncio.Event()

    @property
    def ending(self) -> bool:
        """True once an end was decided (the session no longer counts as live)."""
        return self._ended.done()

    # ---- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the session until it ends, then clean up everything it started."""
        outcome = SHUTDOWN
        try:
            log.info(
                "session %s opened (model %s, %s key)",
                self.id,
                self.admission.model,
                self.admission.credential.kind,
            )
            self.spawn(self._read())
            self.spawn(self._send_acks())
            drop_after = self.services.faults.drop_socket_after
            if drop_after is not None:
                self.spawn(self._drop_after(drop_after))
            if self.services.credits.exhausted(self.account_key):
                self.end(
                    EndRequest(
                        "insufficient_credits", "insufficient_credits", 1000, "insufficient_credits"
                    )
                )
            outcome = await asyncio.shield(self._ended)
        finally:
            await self._finish(outcome)

    def end(self, request: EndRequest) -> None:
        """Ask the session to end (the first request wins). Call on the emulator's loop."""
        if not self._ended.done():
            self._ended.set_result(request)

    async def _finish(self, request: EndRequest) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if request.error is not None:
            await self.send(Error(error=request.error))
        if request.generation_ended is not None:
            await self.send(GenerationEnded(seconds=self._seconds, reason=request.generation_ended))
        code: int | None = request.close_code
        if request.abort:
            transport = self.request.transport
            if transport is not None:
                transport.abort()
            code = None
        elif not self.ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.ws.close(code=request.close_code, message=request.close_message.encode()),
                    CLOSE_TIMEOUT,
                )
        else:
            code = self.ws.close_code
        if self._peer is not None:
            await self._peer.close()
        if self._room_link is not None:
            await self._room_link.close(request.close_message or request.reason)
        self.log.ended(request.reason, code)
        log.info("session %s ended: %s after %d s", self.id, request.reason, self._seconds)
        self.done.set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` for the session's lifetime (cancelled when it ends; a crash ends it)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session %s: task failed", self.id, exc_info=task.exception())
            self.end(EndRequest("error", "error", 1011, "internal_error"))

    async def send(self, message: ServerMessage) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(encode(message))
        except (ConnectionError, RuntimeError) as exc:
            log.debug("session %s: send failed: %s", self.id, exc)

    # ---- reading --------------------------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.TEXT:
                await self._handle(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await self.send(Error(error="Binary frames are not supported: send JSON text"))
            elif msg.type == WSMsgType.ERROR:  # e.g. a frame over the size limit (1009)
                log.info("session %s: socket error: %s", self.id, msg.data)
                self.end(EndRequest("error"))
                return
            else:  # CLOSE, CLOSING, CLOSED
                self.end(DISCONNECT)
                return

    async def _handle(self, frame: str) -> None:
        try:
            message = parse_client(frame)
        except ProtocolError as exc:
            log.warning("session %s: bad message: %s", self.id, exc.message)
            await self.send(Error(error=f"Invalid message: {exc.message}"))
            return
        if isinstance(message, Prompt):
            await self.apply_state(message)
        elif isinstance(message, SetImage):
            if message.image_data is None and _names_an_image_ref(frame):
                self._ack(SetImageAck(success=False, error=IMAGE_REF_UNSUPPORTED))
                self.log.rejected("image", IMAGE_REF_UNSUPPORTED)
                self.state_answered.set()
                return
            keep_prompt = message.prompt is None and await self._prompt_key_absent(frame)
            await self.apply_state(message, keep_prompt=keep_prompt)
        elif isinstance(message, Offer):
            if await self._choose(WEBRTC, "offer"):
                await self._on_offer(message.sdp)
        elif isinstance(message, IceCandidate):
            self.log.remote_candidate()
            if self.transport == LIVEKIT:
                log.debug("session %s: ignored an ICE candidate (LiveKit session)", self.id)
            elif self._peer is None:
                self._early_candidates.append(message.candidate)
            else:
                await self._peer.add_candidate(message.candidate)
        elif isinstance(message, LivekitJoin):
            if await self._choose(LIVEKIT, "livekit_join"):
                self._room_link = RoomLink(self)
                await self._room_link.join(message)
        else:
            log.debug("session %s: ignored a %r message", self.id, message.type)

    async def _choose(self, transport: str, kind: str) -> bool:
        """Fix the session's transport with its first media message; False (and an ``error``)
        for a message of the other transport, or a second join."""
        if self.transport is None:
            self.transport = transport
            self.log.transport(transport)
            log.info("session %s: %s transport", self.id, transport)
            return True
        if transport == LIVEKIT and self.transport == LIVEKIT:
            await self.send(Error(error="livekit_join: this session already joined its room"))
        elif self.transport == LIVEKIT:
            await self.send(
                Error(
                    error=f"{kind}: this session uses LiveKit (livekit_join); "
                    "WebRTC offers are not accepted on it"
                )
            )
        else:
            await self.send(
                Error(
                    error=f"{kind}: this session uses WebRTC offer/answer; open a new "
                    "connection to join a LiveKit room"
                )
            )
        return False

    async def fail_join(self, error: str) -> None:
        """The Gen-B join cannot be served: tell the client (the session stays open)."""
        log.warning("session %s: %s", self.id, error)
        await self.send(Error(error=error))

    # ---- state: prompt and image ----------------------------------------------------------------

    async def apply_state(self, message: Prompt | SetImage, *, keep_prompt: bool = False) -> None:
        """Handle a ``prompt`` or ``set_image`` (also a Gen-B join's ``initial_state``)."""
        if isinstance(message, Prompt):
            await self._on_prompt(message)
        else:
            await self._on_set_image(message, keep_prompt=keep_prompt)
        self.state_answered.set()

    def current_effect(self) -> Effect | None:
        return self._effect

    def _prompt_refusal(self, prompt: str) -> str | None:
        """Why a prompt is refused (moderation, or text that is not valid Unicode), or None."""
        if not _valid_text(prompt):
            return INVALID_PROMPT_TEXT
        if not self.services.moderator.prompt_allowed(prompt):
            return PROMPT_REJECTED
        return None

    async def _on_prompt(self, message: Prompt) -> None:
        log.info("session %s: prompt %s", self.id, json.dumps(message.prompt[:80]))
        refusal = self._prompt_refusal(message.prompt)
        if refusal is not None:
            self._ack(PromptAck(prompt=message.prompt, success=False, error=refusal))
            self.log.rejected("prompt", refusal)
            return
        await self._apply(message.prompt, self._reference)
        self._ack(PromptAck(prompt=message.prompt, success=True, error=None))
        self.log.prompt(message.prompt)

    async def _prompt_key_absent(self, frame: str) -> bool:
        """True when a set_image frame has no ``prompt`` key at all (not even null)."""

        def absent() -> bool:
            return "prompt" not in json.loads(frame)

        if len(frame) < 65536:
            return absent()
        result: bool = await self._in_executor(absent)
        return result

    async def _on_set_image(self, message: SetImage, *, keep_prompt: bool = False) -> None:
        log.info(
            "session %s: set_image (%s, prompt %s)",
            self.id,
            "clear" if message.image_data is None else f"{len(message.image_data)} base64 chars",
            json.dumps(message.prompt[:80]) if message.prompt is not None else "none",
        )
        refusal = self._prompt_refusal(message.prompt) if message.prompt is not None else None
        if refusal is not None:
            self._ack(SetImageAck(success=False, error=refusal))
            self.log.rejected("prompt", refusal)
            return
        reference: ReferenceImage | None = None
        if message.image_data is not None:
            config = self.services.config
            try:
                reference = await self._in_executor(
                    lambda: prepare(
                        message.image_data or "",
                        max_bytes=config.max_image_bytes,
                        moderator=self.services.moderator,
                    )
                )
            except ImageRejected as exc:
                self._ack(SetImageAck(success=False, error=exc.message))
                self.log.rejected("image", exc.message)
                return
        prompt = self._prompt if keep_prompt else message.prompt
        await self._apply(prompt, reference)
        self._ack(SetImageAck(success=True, error=None))
        if message.prompt is not None:
            self.log.prompt(message.prompt)
        self.log.image(reference.sha256 if reference is not None else None)

    async def _apply(self, prompt: str | None, reference: ReferenceImage | None) -> None:
        pixels = reference.pixels if reference is not None else None
        self._effect = await self._in_executor(lambda: build_effect(prompt, pixels))
        self._prompt, self._reference = prompt, reference
        log.debug("session %s: effect now %r", self.id, self._effect)

    async def _in_executor(self, work: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, work)

    def _ack(self, message: ServerMessage) -> None:
        faults = self.services.faults
        if faults.drop_acks:
            log.info("session %s: dropped an ack (fault injection)", self.id)
            return
        self._acks.put_nowait((time.monotonic() + max(0.0, faults.ack_delay), message))

    async def _send_acks(self) -> None:
        while True:
            due, message = await self._acks.get()
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.send(message)

    # ---- media ----------------------------------------------------------------------------------

    async def _on_offer(self, sdp: str) -> None:
        self.log.offer()
        if self.services.faults.refuse_offers:
            log.info("session %s: refused an offer (fault injection)", self.id)
            await self.send(Error(error="Offer refused by the emulator (fault: refuse_offers)"))
            self.end(EndRequest("offer_refused", None, 1011, "offer refused"))
            return
        if self._peer is not None:  # a new offer on the same socket: start a fresh peer
            await self._peer.close()
        peer = MediaPeer(
            effect=self.current_effect,
            on_frame_received=self.log.frame_received,
            on_frame_sent=self.log.frame_sent,
            on_state=self.media_state,
            ice_servers=self.ice_servers,
        )
        self._peer = peer
        early, self._early_candidates = self._early_candidates, []
        for candidate in early:
            await peer.add_candidate(candidate)
        try:
            answer = await peer.answer(sdp)
        except Exception as exc:
            log.warning("session %s: unusable offer: %s", self.id, exc)
            await self.send(Error(error=f"Invalid offer: {exc}"))
            self.end(EndRequest("invalid_offer", None, 1011, "invalid offer"))
            return
        await self.send(Answer(sdp=answer))
        self.media_address_sent()
        if not self._session_id_sent:
            self._session_id_sent = True
            await self.send(
                SessionId(
                    session_id=self.id,
                    server_ip=self.services.config.host,
                    server_port=self.services.port,
                )
            )

    def media_address_sent(self) -> None:
        """The client has what it needs to connect the media (Gen-A's answer, Gen-B's room
        info): the media must connect within ``media_connect_seconds`` (not while generating:
        a new offer on a live session is bounded by its peer's own failure)."""
        seconds = self.services.config.media_connect_seconds
        if seconds is None or self._generating:
            return
        if self._media_deadline is not None:
            self._media_deadline.cancel()
        self._media_deadline = self.spawn(self._expect_media(seconds))

    async def _expect_media(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        room = self._room_link.room if self._room_link is not None else None
        if room is not None and getattr(room, "media_path_up", False):
            return  # Gen-B: the path is up, the first frame is on its way
        if not self._generating:
            log.info("session %s: no media connection within %g s", self.id, seconds)
            self.end(media_failed(seconds, self.ice_servers))

    def media_state(self, state: str) -> None:
        """The peer connection's (Gen-A) or the room's (Gen-B) media state changed."""
        if self.ending:
            return
        if state == "connected" and not self._generating:
            self._generating = True
            self.spawn(self._generate())
        elif state == "failed":
            self.end(media_failed(None, self.ice_servers))

    def left_room(self) -> None:
        """The user left the Gen-B room: the session is over."""
        self.end(LEFT_ROOM)

    async def _generate(self) -> None:
        await self.send(GenerationStarted())
        tick = self.services.config.tick_seconds
        credits = self.services.credits
        next_tick = time.monotonic() + tick
        while True:
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            next_tick += tick
            self._seconds += 1
            remaining = credits.charge(self.account_key, 1)
            self.log.seconds(self._seconds)
            await self.send(GenerationTick(seconds=self._seconds))
            if remaining is not None and remaining <= 0:
                self.end(
                    EndRequest(
                        "insufficient_credits", "insufficient_credits", 1000, "insufficient_credits"
                    )
                )
                return
            if self.max_seconds is not None and self._seconds >= self.max_seconds:
                self.end(EndRequest("timeout", "timeout", 1000, "session_duration_limit"))
                return

    # ---- faults ---------------------------------------------------------------------------------

    async def _drop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        log.info("session %s: dropping the socket (fault injection)", self.id)
        self.end(DROPPED)
