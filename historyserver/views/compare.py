"""Two sessions side by side (the same job run twice): per function attempts, failures and durations."""

from __future__ import annotations

from .common import Views

views = Views("compare")
