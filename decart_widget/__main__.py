"""Run `python -m decart_widget`: the same as the `decart-widget` command."""

from .cli import main

raise SystemExit(main())
