"""How numbers read on every page: thousands separators, percentages, short decimals."""

from __future__ import annotations

from datetime import UTC, datetime


def count(value: int | float | None) -> str:
    """``56518`` -> ``"56,518"``; ``None`` -> an em dash."""
    return "—" if value is None else f"{int(value):,}"


def percent(value: float | None, digits: int = 1) -> str:
    """``0.7215`` -> ``"72.2%"``."""
    return "—" if value is None else f"{value:.{digits}%}"


def decimal(value: float | None, digits: int = 3) -> str:
    """``0.860359`` -> ``"0.860"``."""
    return "—" if value is None else f"{value:.{digits}f}"


def signed_points(value: float, digits: int = 1) -> str:
    """A difference of rates in percentage points: ``0.046`` -> ``"+4.6 pts"``."""
    return f"{value * 100:+.{digits}f} pts"


def timestamp(unix: float) -> str:
    """Unix time as ``2026-11-27 09:55 UTC``."""
    return datetime.fromtimestamp(unix, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
