"""Check ``method NAME { k = v }`` against the editors' hyperparameter dataclasses.

The schema is ``kedit_vc.editors.hparams.HPARAMS`` (torch-free), so a typo in a
hyperparameter is caught before any model is loaded.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping as AbcMapping
from functools import lru_cache
from typing import Any, Callable

from kedit_vc.editors.hparams import HPARAMS

from .diagnostics import Diagnostic, did_you_mean
from .ir import ListValue, MapValue, MethodChoice, Param, Range, Value
from .metrics import METRICS

Report = Callable[[Diagnostic], None]


def _kinds(hint: Any) -> set[str]:
    """The value kinds a field annotation accepts: int, float, str, ints, strs, map."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_kinds(a) for a in typing.get_args(hint)))
    if hint is type(None):
        return set()
    if hint is bool:
        return {"bool"}
    if hint is int:
        return {"int"}
    if hint is float:
        return {"int", "float"}
    if hint is str:
        return {"str"}
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return {"strs" if args and args[0] is str else "ints"}
    if origin in (dict, AbcMapping, typing.Mapping):
        return {"map"}
    return {"int", "float", "str", "ints", "strs", "map"}


@lru_cache(maxsize=None)
def schema(method: str) -> dict[str, frozenset[str]]:
    """Field name -> accepted value kinds for ``method``."""
    hints = typing.get_type_hints(HPARAMS[method])
    return {name: frozenset(_kinds(hint)) for name, hint in hints.items()}


def _kind(value: Value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, Range):
        return "ints"
    if isinstance(value, MapValue):
        return "map"
    items = value.items
    if all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        return "ints"
    if all(isinstance(i, str) for i in items):
        return "strs"
    return "mixed list"


_KIND_NAMES = {
    "int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false",
    "ints": "a list or range of whole numbers (e.g. 4..8)", "strs": "a list of strings",
    "map": "a map { name = value }", "mixed list": "a list of mixed values",
}


def _numbers(value: Value) -> list[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    if isinstance(value, ListValue):
        return [n for item in value.items for n in _numbers(item)]
    if isinstance(value, MapValue):
        return [n for p in value.params for n in _numbers(p.value)]
    return []


def check_method(method: MethodChoice, report: Report) -> None:
    """Unknown method or hyperparameter, wrong value kinds, bad ranges and weights."""
    if method.name not in HPARAMS:
        report(Diagnostic(method.at("name"), f"unknown method '{method.name}'"
                          f"{did_you_mean(method.name, HPARAMS) or ' (known: ' + ', '.join(sorted(HPARAMS)) + ')'}"))
        return
    fields = schema(method.name)
    seen: dict[str, Param] = {}
    for param in method.params:
        if param.name in seen:
            report(Diagnostic(param.at("name"), f"hyperparameter '{param.name}' is set twice"))
            continue
        seen[param.name] = param
        if param.name not in fields:
            report(Diagnostic(param.at("name"), f"unknown hyperparameter '{param.name}' for {method.name}"
                              f"{did_you_mean(param.name, fields)}"))
            continue
        if any(not math.isfinite(n) for n in _numbers(param.value)):
            report(Diagnostic(param.at("value"), "number out of range"))
            continue
        kind, accepted = _kind(param.value), fields[param.name]
        if kind not in accepted:
            shown = accepted - {"int"} if "float" in accepted else accepted
            wanted = " or ".join(sorted(_KIND_NAMES[k] for k in shown))
            report(Diagnostic(param.at("value"), f"'{param.name}' takes {wanted}, not {_KIND_NAMES[kind]}"))
            continue
        if isinstance(param.value, Range) and param.value.low > param.value.high:
            report(Diagnostic(param.at("value"), f"empty range {param.value.low}..{param.value.high}"
                              " (ranges include both ends and go upwards)"))
        if method.name == "auto":
            _check_auto(param, report)


#: Metrics measured on generations or text, not on an edit's probes: ``auto`` cannot weigh them.
_NOT_PROBED = ("fluency", "perplexity")


def _check_auto(param: Param, report: Report) -> None:
    """``weights`` name probe metrics with non-negative numbers; ``candidates`` name editors;
    ``hparams`` maps an editor to its hyperparameters, checked like its own method block."""
    if param.name == "weights" and isinstance(param.value, MapValue):
        for weight in param.value.params:
            if weight.name not in METRICS:
                report(Diagnostic(weight.at("name"), f"unknown metric '{weight.name}' in weights"
                                  f"{did_you_mean(weight.name, METRICS)}"))
            elif weight.name in _NOT_PROBED:
                report(Diagnostic(weight.at("name"), f"'{weight.name}' is not measured on the edit's probes, "
                                  "so auto cannot weigh it"))
            elif not isinstance(weight.value, (int, float)) or isinstance(weight.value, bool) \
                    or weight.value < 0:
                report(Diagnostic(weight.at("value"), "a weight must be a number >= 0"))
    if param.name == "candidates" and isinstance(param.value, ListValue):
        editors = [name for name in HPARAMS if name != "auto"]
        for name in param.value.items:
            if name not in editors:
                report(Diagnostic(param.at("value"), f"unknown candidate method '{name}'"
                                  f"{did_you_mean(str(name), editors)}"))
    if param.name == "hparams" and isinstance(param.value, MapValue):
        editors = [name for name in HPARAMS if name != "auto"]
        for block in param.value.params:
            if block.name not in editors:
                report(Diagnostic(block.at("name"), f"unknown candidate method '{block.name}' in hparams"
                                  f"{did_you_mean(block.name, editors)}"))
            elif not isinstance(block.value, MapValue):
                report(Diagnostic(block.at("value"), f"hparams of {block.name} take a map {{ name = value }}"))
            else:
                check_method(MethodChoice(block.name, block.value.params, block.span, block.parts), report)
