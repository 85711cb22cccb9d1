"""Adjusting a compiled plan from the command line: ``--method`` and ``--hparam``.

Hyperparameters belong to a method, so ``--method M`` drops the spec's hyperparameters
of any other method (a method that nests other methods' hyperparameters, like ``auto``,
keeps them for that method as a candidate); calls
that end up identical are merged into one batch. Every resulting call is checked against
the method's hyperparameter schema before a model is loaded, so a typo costs nothing.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from kedit_vc.compiler.plan import EditorCall, Plan
from kedit_vc.errors import UsageError


def check_call(call: EditorCall, source: str = "--hparam") -> None:
    """Refuse an unknown method or hyperparameter, or a setting the method's own checks
    refuse, with a one-line error."""
    from kedit_vc.editors.registry import build_hparams, check_hparams, require_method

    require_method(call.method)
    try:
        hparams = build_hparams(call.method, call.hparams)
    except TypeError as error:
        raise UsageError(f"{source}: {call.method} has no such hyperparameter ({error})") from None
    for problem in check_hparams(call.method, hparams):
        own = problem if problem.startswith(f"{call.method}:") else f"{call.method}: {problem}"
        raise UsageError(f"{source}: {own}")


def override(plan: Plan, method: str | None = None, hparams: Mapping[str, Any] | None = None) -> Plan:
    """``plan`` with every call's method and/or hyperparameters replaced."""
    from kedit_vc.editors.registry import nested_hparams_field

    merged: dict[tuple[str, str], EditorCall] = {}
    for call in plan.calls:
        name = method.lower() if method else call.method
        params = dict(call.hparams) if name == call.method else {}
        nest = nested_hparams_field(name)
        if nest and call.method != name and call.hparams:  # keep them for that candidate (auto)
            params = {nest: {call.method: dict(call.hparams)}}
        params.update(hparams or {})
        key = (name, json.dumps(params, sort_keys=True))
        previous = merged.get(key)
        requests = (previous.requests if previous else ()) + call.requests
        merged[key] = EditorCall(name, params, requests)
    adjusted = Plan(calls=tuple(merged.values()), model=plan.model, expectations=plan.expectations,
                    notes=plan.notes)
    for call in adjusted.calls:
        check_call(call, "--hparam" if hparams else "the spec's method block")
    return adjusted
