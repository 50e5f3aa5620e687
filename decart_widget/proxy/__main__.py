"""``python -m decart_widget.proxy``: the same as ``decart-widget proxy``."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
