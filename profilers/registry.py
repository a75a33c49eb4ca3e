"""Registry look-up: plain dicts of name -> thing, and an error that lists the valid names.

Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

from typing import Mapping, TypeVar

from profilers.errors import UnknownName

T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, kind: str) -> T:
    """Return ``registry[name]`` or raise ``UnknownName`` naming the valid choices."""
    try:
        return registry[name]
    except KeyError:
        valid = ", ".join(sorted(registry)) or "(none)"
        raise UnknownName(
            f"Unknown {kind} {name!r}.", f"Valid {kind}s: {valid}."
        ) from None
