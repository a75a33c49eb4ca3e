"""ExperimentSpec: what to run (workload, variants, params) and how (timeout, profiling).

Validated in the launching process, before anything is spawned, so a bad name or
param is an immediate ``BadInput`` that lists the valid choices. Must not import
tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from profilers.errors import BadInput

DEFAULT_TIMEOUT_S = 600.0


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
        if self.timeout_s <= 0:
            raise BadInput(f"Timeout must be positive, got {self.timeout_s}.", "Pass --timeout SECONDS.")
        if self.profile_steps < 1:
            raise BadInput(f"profile_steps must be >= 1, got {self.profile_steps}.", "")
        if not 0.01 <= self.sample_interval_s <= 10:
            raise BadInput(f"Sample interval {self.sample_interval_s}s is outside 0.01-10 s.", "")
        return workload.resolve_params(self.params)

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
