"""Per-key credits, in generation seconds.

A key without a balance has unlimited credits. Sessions opened with a client token charge the
permanent key that minted it. Thread-safe: tests set balances from their own thread while the
emulator's loop charges them.
"""

from __future__ import annotations

import threading


class CreditLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._balances: dict[str, float] = {}

    def set(self, key: str, seconds: float | None) -> None:
        """Give ``key`` a balance of ``seconds`` (None: unlimited)."""
        if seconds is not None and seconds < 0:
            raise ValueError(f"credits must be >= 0 seconds, got {seconds!r}")
        with self._lock:
            if seconds is None:
                self._balances.pop(key, None)
            else:
                self._balances[key] = float(seconds)

    def remaining(self, key: str) -> float | None:
        """Seconds left for ``key``; None when unlimited."""
        with self._lock:
            return self._balances.get(key)

    def exhausted(self, key: str) -> bool:
        with self._lock:
            balance = self._balances.get(key)
            return balance is not None and balance <= 0

    def charge(self, key: str, seconds: float) -> float | None:
        """Take ``seconds`` from ``key``'s balance (never below 0); returns what is left."""
        with self._lock:
            balance = self._balances.get(key)
            if balance is None:
                return None
            balance = max(0.0, balance - seconds)
            self._balances[key] = balance
            return balance
