"""The study's axes beside mode and device count: each a comma list on the sweep's command line, each value a
separately labelled configuration of the modes it applies to (its own trials, table row and plot line). An axis is
declared once, as TrainConfig field metadata ("axis": the modes it varies in; "label": how a value reads); the
Axes dataclass, its flags, the plan's variants, the labels and the records follow from it."""

from __future__ import annotations

import itertools
import typing
from dataclasses import field, fields, make_dataclass
from typing import Literal

from mgpu_core.cli_args import field_docs
from mgpu_core.config import AXES, DEFAULTS, TrainConfig

Switch = Literal["off", "on"]
"""A bool axis on the command line, e.g. off,on."""
APPLIES_TO = AXES
"""Which modes each axis varies (TrainConfig field metadata "axis")."""


def _axis_field(name: str, hint: object, doc: str) -> tuple[str, object, object]:
    """(name, type, field) of the Axes field for TrainConfig's field `name`: a tuple of its values."""
    if hint is bool:
        item, default, example = Switch, ("on" if DEFAULTS[name] else "off",), "off,on"
    else:
        item, default = hint, (DEFAULTS[name],)
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
        example = ",".join(choices) if choices else f"{DEFAULTS[name]:g},{DEFAULTS[name] * 4:g}"
    help_text = f"{doc} Varied in {' and '.join(AXES[name])}, e.g. {example}."
    return name, tuple[item, ...], field(default=default, metadata={"help": help_text})


def _check(self) -> None:
    """Every value of every axis is a valid TrainConfig value (ConfigError naming the field otherwise)."""
    for f in fields(self):
        for value in getattr(self, f.name):
            TrainConfig().for_mode(AXES[f.name][0], **{f.name: _train_value(f.name, value)})


def _train_value(name: str, value: object) -> object:
    return value == "on" if isinstance(DEFAULTS[name], bool) else value


def _variants(self, mode: str) -> list[tuple[tuple[str, object], ...]]:
    """Every combination of the axes that apply to `mode`, as (field, TrainConfig value) pairs."""
    names = [f.name for f in fields(self) if mode in AXES[f.name]]
    values = [[_train_value(n, v) for v in getattr(self, n)] for n in names]
    return [tuple(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


_HINTS = typing.get_type_hints(TrainConfig)
_DOCS = field_docs(TrainConfig)
Axes = make_dataclass(
    "Axes", [_axis_field(name, _HINTS[name], _DOCS.get(name, "")) for name in AXES], frozen=True,
    namespace={"__post_init__": _check, "variants": _variants, "__module__": __name__,
               "__doc__": "The axes of a study: one tuple of TrainConfig values per axis (bool axes as off/on)."})
