"""The workload contract: declared params and variants, and one ``run`` per variant.

A workload is a plain object registered in ``workloads.WORKLOADS``. The worker calls
``prepare(params)`` once per experiment (NumPy data shared by every variant: same seeded
weights, same data, same batch order, float32), then ``run(variant, params, data, rec)``
for each variant. ``run`` drives its own loop and reports every step to the
``StepRecorder`` (wall time, phase spans, loss); it imports TensorFlow itself, inside the
function, and only for variants with ``needs_tf``.

Must not import tensorflow, pynvml or streamlit at module level.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from profilers.errors import BadInput
from profilers.registry import lookup

if TYPE_CHECKING:
    from profilers.recorder import StepRecorder


@dataclass(frozen=True)
class Param:
    """A declared workload parameter. ``kind`` is int, float, str or bool."""

    name: str
    kind: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    #: The variants that read this param (None: every variant).
    variants: tuple[str, ...] | None = None

    def used_by(self, variants: Any) -> bool:
        """Whether any of ``variants`` reads this param."""
        return self.variants is None or any(v in self.variants for v in variants)

    def parse(self, raw: Any) -> Any:
        """Turn a CLI/UI value into ``kind``; raise ``BadInput`` that says what is valid."""
        try:
            if self.kind is bool and isinstance(raw, str):
                low = raw.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                value: Any = low in ("true", "1", "yes")
            elif self.kind is int and isinstance(raw, str):
                value = int(float(raw)) if raw.strip().lower().endswith(("e3", "e4", "e5", "e6")) else int(raw)
            elif self.kind is float and isinstance(raw, str) and raw.strip().lower() in ("none", "null", ""):
                value = None
            elif raw is None:
                value = None
            else:
                value = self.kind(raw)
        except (TypeError, ValueError):
            raise BadInput(
                f"Param {self.name}={raw!r} is not a valid {self.kind.__name__}.",
                f"{self.name}: {self.help}",
            ) from None
        if value is None and self.default is not None:
            raise BadInput(f"Param {self.name} needs a value.", f"{self.name}: {self.help}")
        if self.choices is not None and value not in self.choices:
            raise BadInput(
                f"Param {self.name}={value!r} is not one of the choices.",
                f"Valid values: {', '.join(map(str, self.choices))}.",
            )
        if value is not None and self.kind in (int, float):
            from profilers.spec import check_number

            check_number(f"Param {self.name}", value, minimum=self.minimum, maximum=self.maximum,
                         integer=self.kind is int, hint=f"{self.name}: {self.help}")
        return value


@dataclass(frozen=True)
class Variant:
    """One implementation of the workload's maths."""

    name: str
    help: str
    needs_tf: bool = False
    #: "availability() -> (ok, reason)"; None means always available.
    availability: Callable[[], tuple[bool, str | None]] | None = None


@dataclass
class VariantResult:
    """What ``Workload.run`` returns besides the steps it recorded."""

    final_loss: float
    #: Free-form per-run facts shown in the manifest's ``results`` (e.g. ops per step).
    extra: dict[str, Any] = field(default_factory=dict)
    #: Tables the variant measured itself (e.g. in worker subprocesses), by name in
    #: ``profilers.model.SCHEMAS``; each replaces the recorder's table of that name.
    tables: dict[str, Any] = field(default_factory=dict)


class Workload:
    """Base class. Subclasses set the class attributes and implement prepare/run."""

    name: str = ""
    help: str = ""
    params: Mapping[str, Param] = {}
    variants: Mapping[str, Variant] = {}
    #: Variant whose final loss every other variant is checked against (None: no check).
    baseline: str | None = None
    #: Relative tolerance of the float32 loss check.
    loss_rtol: float = 1e-3
    loss_atol: float = 1e-5
    #: Named param sets, e.g. a seed's exact configuration.
    presets: Mapping[str, Mapping[str, Any]] = {}
    #: The dtype of the step's maths: the achieved GFLOP/s is compared with a GEMM peak
    #: measured in this dtype.
    compute_dtype: str = "float32"

    # -- params ------------------------------------------------------------------------
    def resolve_params(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``raw`` (after an optional ``preset``), parsed and checked."""
        raw = dict(raw)
        values = {name: p.default for name, p in self.params.items()}
        preset = raw.pop("preset", None)
        if preset:
            values.update(lookup(self.presets, preset, f"{self.name} preset"))
        for key, val in raw.items():
            param = lookup(self.params, key, f"{self.name} param")
            values[key] = param.parse(val)
        return values

    def params_for(self, variant: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The params ``variant`` reads (a run's manifest lists only those)."""
        return {k: v for k, v in params.items() if k not in self.params or self.params[k].used_by([variant])}

    def variant(self, name: str) -> Variant:
        return lookup(self.variants, name, f"{self.name} variant")

    def warmup_steps(self, params: Mapping[str, Any]) -> int:
        """Steps recorded but left out of the statistics."""
        return int(params.get("warmup_steps", 5))

    def total_steps(self, params: Mapping[str, Any]) -> int:
        """How many steps one variant runs (for progress bars)."""
        raise NotImplementedError

    def flops_per_step(self, params: Mapping[str, Any]) -> dict[str, float]:
        """FLOPs of one step per compute category (forward/backward/optimizer_update)."""
        return {}

    # -- running -----------------------------------------------------------------------
    def prepare(self, params: Mapping[str, Any]) -> Any:
        """Build the shared NumPy data once per experiment."""
        raise NotImplementedError

    def run(self, variant: str, params: Mapping[str, Any], data: Any,
            rec: "StepRecorder") -> VariantResult:
        raise NotImplementedError

    def cleanup(self, data: Any) -> None:
        """Release what ``prepare`` made (temp files); called once the variants are done."""
        close = getattr(data, "cleanup", None)
        if close is not None:
            close()
