"""Which step-time category a TF op belongs to: by its type, else by its name scope.

One classification for the breakdown (``profilers.breakdown``) and the op table
(``profilers.xprof_tools``), in a module of its own so neither imports the other.
Pure; must not import tensorflow, streamlit, altair or pynvml.
"""
from __future__ import annotations

import re
from typing import Sequence

from profilers.errors import BadInput
from profilers.model import CATEGORIES

_CAT = {c: i for i, c in enumerate(CATEGORIES)}

#: Name-scope rules, tried on each ``/``-separated segment of an op name, left to right:
#: the first segment that matches a rule decides. ``gradient_tape/forward/MatMul`` is
#: backward because ``gradient_tape`` comes first.
SCOPE_RULES: tuple[tuple[str, str], ...] = (
    # Keras uniquifies scope names (a model named "forward" traces as "forward_1"), so a
    # numeric suffix is allowed everywhere.
    (r"^(gradient_tape|gradients|backward)(_\d+)*$", "backward"),
    (r"^optimizer_update(_\d+)*$", "optimizer_update"),
    (r"^(forward|compile_loss)(_\d+)*$", "forward"),
    (r"(?i)^(sgd|adam|adamw|rmsprop|adagrad|adadelta|adamax|nadam|ftrl|lion|lamb|optimizer)(_\d+)*$",
     "optimizer_update"),
)

#: Op types whose category does not depend on their scope.
OP_TYPE_CATEGORIES: dict[str, str] = {
    **{t: "input_wait" for t in ("IteratorGetNext", "IteratorGetNextSync", "IteratorGetNextAsOptional",
                                 "OptionalGetValue", "OptionalHasValue",
                                 "MultiDeviceIteratorGetNextFromShard", "Dataset")},
    **{t: "host_device_transfer" for t in ("_Send", "_Recv", "_HostSend", "_HostRecv", "Send", "Recv",
                                           "_CopyFromGpuToHost", "_CopyFromHostToGpu")},
    **{t: "compile_trace" for t in ("_XlaCompile", "XlaCompile")},
}


# -- classification -----------------------------------------------------------------------
def _compile_rules(rules: Sequence[tuple[str, str]]) -> list[tuple[re.Pattern[str], str]]:
    out = []
    for pattern, category in rules:
        if category not in _CAT:
            raise BadInput(f"Scope rule {pattern!r} maps to unknown category {category!r}.",
                           f"Valid categories: {', '.join(CATEGORIES)}.")
        out.append((re.compile(pattern), category))
    return out


_DEFAULT_RULES = _compile_rules(SCOPE_RULES)


def op_category(op_name: str, op_type: str | None = None,
                rules: Sequence[tuple[str, str]] | None = None) -> str | None:
    """Category of a TF op from its type and name scope, or None if neither says.

    ``op_name`` is ``scope/name`` or a trace long name ``scope/name:Type``.
    """
    return _op_category(op_name, op_type, _DEFAULT_RULES if rules is None else _compile_rules(rules))


def _op_category(op_name: str, op_type: str | None,
                 compiled: Sequence[tuple[re.Pattern[str], str]]) -> str | None:
    name = op_name
    if op_type is None:
        name, sep, op_type = op_name.rpartition(":")
        if not sep:
            name, op_type = op_name, ""
    by_type = OP_TYPE_CATEGORIES.get(op_type or "")
    if by_type:
        return by_type
    for segment in name.split("/"):
        for rx, category in compiled:
            if rx.match(segment):
                return category
    return None


