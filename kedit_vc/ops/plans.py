"""Adjusting a compiled plan from the command line: ``--method`` and ``--hparam``.

Hyperparameters belong to a method, so ``--method M`` drops the spec's hyperparameters
of any other method (``--method auto`` keeps them for that method as a candidate); calls
that end up identical are merged into one batch. Every resulting call is checked against
the method's hyperparameter schema before a model is loaded, so a typo costs nothing.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from kedit_vc.compiler.plan import EditorCall, Plan
from kedit_vc.errors import UsageError


def check_call(call: EditorCall, source: str = "--hparam") -> None:
    """Refuse an unknown method or hyperparameter with a one-line error."""
    from kedit_vc.editors.hparams import HPARAMS, build_hparams

    if call.method not in HPARAMS:
        known = ", ".join(sorted(HPARAMS))
        raise UsageError(f"method {call.method!r} cannot write an edit here; use one of: {known}")
    try:
        hparams = build_hparams(call.method, call.hparams)
    except TypeError as error:
        raise UsageError(f"{source}: {call.method} has no such hyperparameter ({error})") from None
    if call.method == "auto":
        from kedit_vc.editors.auto.choose import candidate_settings

        candidate_settings(hparams)


def override(plan: Plan, method: str | None = None, hparams: Mapping[str, Any] | None = None) -> Plan:
    """``plan`` with every call's method and/or hyperparameters replaced."""
    merged: dict[tuple[str, str], EditorCall] = {}
    for call in plan.calls:
        name = method.lower() if method else call.method
        params = dict(call.hparams) if name == call.method else {}
        if name == "auto" and call.method != "auto" and call.hparams:  # keep them for that candidate
            params = {"hparams": {call.method: dict(call.hparams)}}
        params.update(hparams or {})
        key = (name, json.dumps(params, sort_keys=True))
        previous = merged.get(key)
        requests = (previous.requests if previous else ()) + call.requests
        merged[key] = EditorCall(name, params, requests)
    adjusted = Plan(calls=tuple(merged.values()), model=plan.model, expectations=plan.expectations)
    for call in adjusted.calls:
        check_call(call, "--hparam" if hparams else "the spec's method block")
    return adjusted
