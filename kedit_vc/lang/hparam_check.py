"""Check ``method NAME { k = v }`` against the registered methods' hyperparameter dataclasses.

The schema comes from ``kedit_vc.editors.registry`` (torch-free), so a typo in a
hyperparameter is caught before any model is loaded. Nothing here knows a method by
name: a field's ``metadata["kind"]`` says when its value names other methods, nests
their hyperparameters or weighs probe metrics, and each method's own ``check`` runs on a
block that passed the located checks.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping as AbcMapping
from functools import cache
from typing import Any, Callable

from kedit_vc.editors.common.hparams import METHOD_HPARAMS, METHODS, PROBE_WEIGHTS
from kedit_vc.editors.registry import build_hparams, check_hparams, method_names, method_spec, unknown_method

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


def schema(method: str) -> dict[str, frozenset[str]]:
    """Field name -> accepted value kinds for ``method``."""
    return _schema(method_spec(method).hparams_class)


@cache
def _schema(cls: type) -> dict[str, frozenset[str]]:
    hints = typing.get_type_hints(cls)
    return {f.name: frozenset(_kinds(hints[f.name])) for f in dataclasses.fields(cls)}


def _field_kinds(method: str) -> dict[str, str]:
    """Field name -> ``metadata["kind"]`` for the fields that name methods or metrics."""
    cls = method_spec(method).hparams_class
    return {f.name: f.metadata["kind"] for f in dataclasses.fields(cls) if "kind" in f.metadata}


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


def _plain(value: Value) -> Any:
    """IR value -> the Python value a hyperparameter field receives (ranges become lists)."""
    if isinstance(value, Range):
        return list(range(value.low, value.high + 1))
    if isinstance(value, ListValue):
        return [_plain(v) for v in value.items]
    if isinstance(value, MapValue):
        return {p.name: _plain(p.value) for p in value.params}
    return value


def check_method(method: MethodChoice, report: Report) -> None:
    """Unknown method or hyperparameter, wrong value kinds, bad ranges and weights, then
    the method's own checks on a block that passed these."""
    problem = unknown_method(method.name)
    if problem is not None:
        known = " (known: " + ", ".join(problem.known) + ")"
        report(Diagnostic(method.at("name"), f"unknown method '{method.name}'{problem.hint() or known}"))
        return
    reported: list[Diagnostic] = []

    def located(diagnostic: Diagnostic) -> None:
        reported.append(diagnostic)
        report(diagnostic)

    _check_params(method, located)
    if not reported:
        try:
            hparams = build_hparams(method.name, {p.name: _plain(p.value) for p in method.params})
        except (TypeError, ValueError):
            return
        for message in check_hparams(method.name, hparams):
            report(Diagnostic(method.at("name"), f"{method.name}: {message}"))


def _check_params(method: MethodChoice, report: Report) -> None:
    fields = schema(method.name)
    kinds = _field_kinds(method.name)
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
        if param.name in kinds:
            _check_named(method.name, kinds[param.name], param, report)


#: Metrics measured on generations or text, not on an edit's probes: nothing can weigh them.
_NOT_PROBED = ("fluency", "perplexity")


def _check_named(owner: str, kind: str, param: Param, report: Report) -> None:
    """A ``PROBE_WEIGHTS`` value names probe metrics with non-negative numbers; a ``METHODS``
    value names other methods; a ``METHOD_HPARAMS`` value maps another method to its
    hyperparameters, checked like its own method block."""
    others = [name for name in method_names() if name != owner]
    if kind == PROBE_WEIGHTS and isinstance(param.value, MapValue):
        for weight in param.value.params:
            if weight.name not in METRICS:
                report(Diagnostic(weight.at("name"), f"unknown metric '{weight.name}' in weights"
                                  f"{did_you_mean(weight.name, METRICS)}"))
            elif weight.name in _NOT_PROBED:
                report(Diagnostic(weight.at("name"), f"'{weight.name}' is not measured on the edit's probes, "
                                  f"so {owner} cannot weigh it"))
            elif not isinstance(weight.value, (int, float)) or isinstance(weight.value, bool) \
                    or weight.value < 0:
                report(Diagnostic(weight.at("value"), "a weight must be a number >= 0"))
    if kind == METHODS and isinstance(param.value, ListValue):
        for name in param.value.items:
            problem = unknown_method(str(name), among=others)
            if problem is not None:
                report(Diagnostic(param.at("value"), f"unknown candidate method '{name}'{problem.hint()}"))
    if kind == METHOD_HPARAMS and isinstance(param.value, MapValue):
        for block in param.value.params:
            problem = unknown_method(block.name, among=others)
            if problem is not None:
                report(Diagnostic(block.at("name"), f"unknown candidate method '{block.name}' in "
                                  f"{param.name}{problem.hint()}"))
            elif not isinstance(block.value, MapValue):
                report(Diagnostic(block.at("value"), f"hparams of {block.name} take a map {{ name = value }}"))
            else:
                check_method(MethodChoice(block.name, block.value.params, block.span, block.parts), report)
