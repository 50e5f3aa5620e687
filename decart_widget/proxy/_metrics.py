"""Counters for ``/metrics``, in the Prometheus text exposition format (version 0.0.4).

No client library: a handful of counters and gauges, rendered by hand. Every name starts with
``decart_proxy_``.
"""

from __future__ import annotations

import time
from collections import Counter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.sessions_active = 0
        self.sessions_total = 0
        self.frames = Counter[str]()  # by direction
        self.bytes = Counter[str]()  # by direction
        self.ends = Counter[str]()  # by reason
        self.refusals = Counter[str]()  # by reason, before any upstream was opened
        self.generation_seconds = 0.0
        self.prompts = 0
        self.images = 0
        self.ledger_errors = 0
        self.ledger_writes = 0
        self.ledger_write_seconds = 0.0
        self.upstream_connect_seconds = 0.0
        self.upstream_connects = 0
        self.draining = False

    def forwarded(self, direction: str, size: int) -> None:
        self.frames[direction] += 1
        self.bytes[direction] += size

    def render(self) -> str:
        lines: list[str] = []

        def metric(
            name: str, kind: str, help_text: str, values: dict[str, float] | float, label: str = ""
        ) -> None:
            lines.append(f"# HELP decart_proxy_{name} {help_text}")
            lines.append(f"# TYPE decart_proxy_{name} {kind}")
            if isinstance(values, dict):
                for key, value in sorted(values.items()):
                    lines.append(f'decart_proxy_{name}{{{label}="{_escape(key)}"}} {value:g}')
            else:
                lines.append(f"decart_proxy_{name} {values:g}")

        metric("sessions_active", "gauge", "Client sessions open now.", self.sessions_active)
        metric("sessions_total", "counter", "Client sessions accepted.", self.sessions_total)
        metric(
            "frames_forwarded_total",
            "counter",
            "WebSocket frames forwarded, by direction.",
            dict(self.frames) or {"client_to_upstream": 0, "upstream_to_client": 0},
            "direction",
        )
        metric(
            "bytes_forwarded_total",
            "counter",
            "Bytes of frames forwarded, by direction.",
            dict(self.bytes) or {"client_to_upstream": 0, "upstream_to_client": 0},
            "direction",
        )
        metric(
            "session_ends_total", "counter", "Sessions ended, by reason.", dict(self.ends), "reason"
        )
        metric(
            "refusals_total",
            "counter",
            "Clients refused before an upstream connection was opened, by reason.",
            dict(self.refusals),
            "reason",
        )
        metric(
            "generation_seconds_total",
            "counter",
            "Generation seconds recorded in the usage ledger.",
            self.generation_seconds,
        )
        metric("prompts_total", "counter", "Prompt messages forwarded.", self.prompts)
        metric("images_total", "counter", "set_image messages forwarded.", self.images)
        metric(
            "ledger_errors_total", "counter", "Failed usage-ledger operations.", self.ledger_errors
        )
        metric("ledger_writes_total", "counter", "Usage-ledger tick writes.", self.ledger_writes)
        metric(
            "ledger_write_seconds_total",
            "counter",
            "Time spent waiting for durable tick writes.",
            self.ledger_write_seconds,
        )
        metric(
            "upstream_connect_seconds_total",
            "counter",
            "Time spent opening upstream connections.",
            self.upstream_connect_seconds,
        )
        metric(
            "upstream_connects_total",
            "counter",
            "Upstream connections opened.",
            self.upstream_connects,
        )
        metric("draining", "gauge", "1 while the proxy is shutting down.", int(self.draining))
        metric(
            "start_time_seconds", "gauge", "Unix time the proxy started.", round(self.started, 3)
        )
        return "\n".join(lines) + "\n"
