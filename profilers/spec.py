"""ExperimentSpec: what to run (workload, variants, params) and how (timeout, profiling).

Validated in the launching process, before anything is spawned, so a bad name or
param is an immediate ``BadInput`` that lists the valid choices. Every number a user
gives (workload params and the options: timeout, profile steps, sample interval) is
checked by ``check_number``: a real, finite number inside its range (NaN and infinity
never pass). Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from profilers.errors import BadInput

DEFAULT_TIMEOUT_S = 600.0
#: The longest timeout an experiment may ask for (a week).
MAX_TIMEOUT_S = 7 * 24 * 3600.0


def check_number(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                 exclusive_minimum: bool = False, integer: bool = False, hint: str = "") -> Any:
    """``value`` if it is a finite number (an int when ``integer``) inside the range, else
    ``BadInput`` that says what is valid. The one check for every param and option."""
    bounds = " and ".join(filter(None, [
        None if minimum is None else f"{'>' if exclusive_minimum else '>='} {minimum:g}",
        None if maximum is None else f"<= {maximum:g}"]))
    want = f"a finite {'integer' if integer else 'number'}{' ' + bounds if bounds else ''}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (integer and value != int(value)):
        raise BadInput(f"{name}={value!r} is not {want}.", hint or f"Give {name} {want}.")
    if minimum is not None and (value < minimum or (exclusive_minimum and value == minimum)):
        raise BadInput(f"{name}={value!r} is below its minimum: it must be {bounds}.",
                       hint or f"Give {name} {want}.")
    if maximum is not None and value > maximum:
        raise BadInput(f"{name}={value!r} is above its maximum: it must be {bounds}.",
                       hint or f"Give {name} {want}.")
    return value


@dataclass
class ExperimentSpec:
    workload: str
    variants: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    profile: bool = False
    profile_steps: int = 10
    samplers: list[str] = field(default_factory=lambda: ["host", "gpu"])
    sample_interval_s: float = 0.1
    experiment_id: str = ""

    def validate(self) -> dict[str, Any]:
        """Check names and params against the registries; return the resolved params."""
        from workloads import WORKLOADS
        from profilers.registry import lookup

        workload = lookup(WORKLOADS, self.workload, "workload")
        if not self.variants:
            raise BadInput("No variants chosen.",
                           f"Valid {self.workload} variants: {', '.join(sorted(workload.variants))}.")
        if len(set(self.variants)) != len(self.variants):
            raise BadInput(f"A variant is listed twice: {', '.join(self.variants)}.", "List each once.")
        for name in self.variants:
            workload.variant(name)
        self.validate_options()
        return workload.resolve_params(self.params)

    def validate_options(self) -> None:
        """The options every experiment kind has: finite and in range."""
        check_number("timeout", self.timeout_s, minimum=0, exclusive_minimum=True, maximum=MAX_TIMEOUT_S,
                     hint="Pass --timeout SECONDS, e.g. --timeout 600.")
        check_number("profile_steps", self.profile_steps, minimum=1, maximum=100_000, integer=True,
                     hint="Pass --profile-steps N, e.g. 10.")
        check_number("sample interval (s)", self.sample_interval_s, minimum=0.01, maximum=10,
                     hint="Pass --sample-hz between 0.1 and 100.")
        if self.workload == "script":  # `sgdscope profile`'s own options, kept in params
            p = self.params
            check_number("window", p.get("window_s", 8.0), minimum=0, exclusive_minimum=True,
                         maximum=24 * 3600.0, hint="Pass --window SECONDS, e.g. 8.")
            check_number("max_steps", p.get("max_steps", 50), minimum=1, integer=True,
                         hint="Pass --max-steps N, e.g. 50.")
            check_number("skip_steps", p.get("skip_steps", 3), minimum=0, integer=True,
                         hint="Pass --skip-steps N, e.g. 3.")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def load(cls, path: Path) -> "ExperimentSpec":
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def parse_param_args(pairs: list[str]) -> dict[str, str]:
    """``["m=100", "n=10"]`` -> ``{"m": "100", "n": "10"}``; malformed pairs are BadInput."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--param {pair!r} is not KEY=VALUE.", "Example: --param m=100")
        out[key.strip()] = value.strip()
    return out
