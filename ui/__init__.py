"""The history server's web pages: Jinja templates and static assets, shipped inside the wheel.

Nothing here is fetched from another host: every script and style is in `static/`, so the UI works
air-gapped.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
