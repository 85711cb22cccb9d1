"""Checked program -> ``Plan``: editor calls, batches, and every concrete probe.

Lowering rules (the plan contract is ``kedit_vc.compiler.plan``):
- Requests use the ROME convention: ``{}`` for the subject, targets without a space.
- The rewrite template is the edit's own prompt, else its relation's template; the
  relation's paraphrases apply either way (``edit "S" P131 prompt "..."``).
- Each edit uses its own ``method``, else its file's, else the includer's, else
  ``DEFAULT_METHOD``. An edit's method of the same name as the file's default adds
  its hyperparameters on top of the default's.
- Edits with the same method and hyperparameters share one ``EditorCall`` (a batch);
  calls appear in the order of their first edit, requests in spec order.
- Foils: rewrite/paraphrase -> old object; neighbour/keep -> new object;
  attribute/alias -> old object; hop/reverse/multihop -> none. ``not "..."`` sets it;
  a foil equal to the target is dropped (the probe only checks the answer).
"""

from __future__ import annotations

import json
from typing import Any

from kedit_vc.editors.defaults import DEFAULT_METHOD
from kedit_vc.lang.ids import edit_id
from kedit_vc.lang.ir import Edit, ListValue, MapValue, MethodChoice, Probe, Range, Value
from kedit_vc.lang.loader import Program
from kedit_vc.lang.placeholders import fill, to_rome

from .plan import EditorCall, EditRequest, Expectation, Plan
from .plan import Probe as PlanProbe

_DEFAULT_FOIL = {"neighbour": "new", "keep": "new", "attribute": "old", "alias": "old"}


def lower_value(value: Value) -> Any:
    """IR value -> JSON value; ``a..b`` becomes the inclusive list of integers."""
    if isinstance(value, Range):
        return list(range(value.low, value.high + 1))
    if isinstance(value, ListValue):
        return [lower_value(v) for v in value.items]
    if isinstance(value, MapValue):
        return {p.name: lower_value(p.value) for p in value.params}
    return value


def _hparams(method: MethodChoice) -> dict[str, Any]:
    return {p.name: lower_value(p.value) for p in method.params}


def resolve_method(edit: Edit, default: MethodChoice | None) -> tuple[str, dict[str, Any]]:
    own = edit.methods[0] if edit.methods else None
    if own is None:
        return (default.name, _hparams(default)) if default is not None else (DEFAULT_METHOD, {})
    if default is not None and default.name == own.name:
        return own.name, {**_hparams(default), **_hparams(own)}
    return own.name, _hparams(own)


def _probe(edit: Edit, template: str, probe: Probe) -> PlanProbe:
    if probe.kind == "paraphrase":
        return PlanProbe("paraphrase", fill(probe.text, edit.subject), edit.new, edit.old)
    prompt = fill(template, probe.text) if probe.is_subject else fill(probe.text, edit.subject)
    target = probe.expected or ""
    foil = probe.foil
    if foil is None:
        default = _DEFAULT_FOIL.get(probe.kind)
        foil = edit.new if default == "new" else edit.old if default == "old" else None
    if foil == target:
        foil = None
    group = None
    if probe.kind == "multihop":
        group = probe.group if probe.group is not None else edit_id(edit.subject, template, edit.new)
    return PlanProbe(probe.kind, prompt, target, foil, group)


def lower_edit(edit: Edit, template: str, relation_paraphrases: tuple[Probe, ...] = ()) -> EditRequest:
    """One edit -> its request: the rewrite probe, relation paraphrases, then the body's probes."""
    probes = [PlanProbe("rewrite", fill(template, edit.subject), edit.new, edit.old)]
    probes += [_probe(edit, template, p) for p in relation_paraphrases]
    probes += [_probe(edit, template, p) for p in edit.probes]
    return EditRequest(
        edit_id=edit_id(edit.subject, template, edit.new),
        subject=edit.subject,
        prompt=to_rome(template),
        target_new=edit.new,
        target_true=edit.old,
        probes=tuple(probes),
    )


def lower(program: Program) -> Plan:
    """The plan of a checked program (``kedit_vc.lang.load`` raised on any problem)."""
    relations = program.relations
    batches: dict[tuple[str, str], tuple[str, dict[str, Any], list[EditRequest]]] = {}
    for scoped in program.edits:
        edit = scoped.edit
        relation = relations[edit.relation] if edit.relation is not None else None
        paraphrases: tuple[Probe, ...] = relation.paraphrases if relation is not None else ()
        if edit.prompt is not None:
            template = edit.prompt
        else:
            assert relation is not None  # the checker refuses an edit with neither
            template = relation.template
        method, hparams = resolve_method(edit, scoped.default_method)
        key = (method, json.dumps(hparams, sort_keys=True))
        batch = batches.setdefault(key, (method, hparams, []))
        batch[2].append(lower_edit(edit, template, paraphrases))
    calls = tuple(EditorCall(m, h, tuple(r)) for m, h, r in batches.values())
    expectations = tuple(Expectation(e.metric, e.op, float(e.threshold)) for e in program.expectations)
    return Plan(calls=calls, model=program.model, expectations=expectations)
