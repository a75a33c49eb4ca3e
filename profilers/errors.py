"""The one funnel for user-facing errors.

Every error a user can meet is a ``SgdscopeError`` whose message says what went wrong
and whose ``hint`` says what to do. The CLI maps the class to an exit code; pages show
``st.error`` and stop. Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations


class SgdscopeError(Exception):
    """Base class: ``message`` (what went wrong) and ``hint`` (what to do)."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip() if self.hint else self.message


class BadInput(SgdscopeError):
    """A parameter, name or path given by the user is not valid."""

    exit_code = 2


class UnknownName(BadInput):
    """A name that is not in a registry; the message lists the valid ones."""


class RunNotFound(SgdscopeError):
    exit_code = 3


class BadBundle(SgdscopeError):
    """A bundle (zip) that cannot be imported; nothing was written."""

    exit_code = 4


class BadTable(SgdscopeError):
    """A table that does not match its declared schema (names the column)."""

    exit_code = 4


class CaptureFailed(SgdscopeError):
    """A workload or capture that failed, timed out or was cancelled."""

    exit_code = 5


class DependencyMissing(SgdscopeError):
    """An optional dependency (TensorFlow, xprof, NVML) is not available."""

    exit_code = 6


class TraceUnavailable(SgdscopeError):
    """A run has no usable trace (absent or corrupt xplane)."""

    exit_code = 7
