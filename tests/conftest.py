"""Suite-wide ordering: browser tests run last.

Playwright's sync API (pytest-playwright's session fixtures) keeps an event loop running in the
main thread once a browser test has run, and every later ``async`` test then fails with
"Runner.run() cannot be called from a running event loop". Running tests/browser after the unit
and integration tests keeps one ``python -m pytest tests`` run green.
"""

from __future__ import annotations

from pathlib import Path

import pytest

BROWSER = Path(__file__).parent / "browser"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def in_browser(item: pytest.Item) -> bool:
        return Path(str(item.fspath)).is_relative_to(BROWSER)

    items[:] = [i for i in items if not in_browser(i)] + [i for i in items if in_browser(i)]
