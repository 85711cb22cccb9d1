"""A plan as text for people: ``kvc compile`` without ``--json``."""

from __future__ import annotations

import json
from collections import Counter

from .plan import Plan


def _hparams(hparams: dict) -> str:
    if not hparams:
        return "defaults"
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(hparams.items()))


def summarize(plan: Plan, *, probes: bool = True) -> str:
    """Calls, their requests, and (with ``probes``) every prompt with its expected answer."""
    requests = plan.requests
    kinds = Counter(p.kind for r in requests for p in r.probes)
    lines = [
        f"model: {plan.model or '(from the store)'}",
        f"{len(requests)} edit(s) in {len(plan.calls)} editor call(s); "
        f"{sum(kinds.values())} probe(s): " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
    ]
    for e in plan.expectations:
        lines.append(f"expect {e.metric} {e.op} {e.threshold:g}")
    for index, call in enumerate(plan.calls, 1):
        lines.append("")
        lines.append(f"call {index}: {call.method} ({_hparams(dict(call.hparams))}), "
                     f"{len(call.requests)} request(s)")
        for request in call.requests:
            old = json.dumps(request.target_true, ensure_ascii=False) if request.target_true else "?"
            lines.append(f"  {request.edit_id}  {request.subject!r}: {request.prompt!r}  "
                         f"{old} -> {json.dumps(request.target_new, ensure_ascii=False)}")
            if request.derived is not None:
                d = request.derived
                lines.append(f"    derived from {d.parent} by {d.rule}: {_evidence(dict(d.evidence))}")
            if not probes:
                continue
            for probe in request.probes:
                foil = f"  (not {json.dumps(probe.foil, ensure_ascii=False)})" if probe.foil else ""
                group = f"  [group {probe.group}]" if probe.group else ""
                lines.append(f"    {probe.kind:<10} {json.dumps(probe.prompt, ensure_ascii=False)} => "
                             f"{json.dumps(probe.target, ensure_ascii=False)}{foil}{group}")
    if plan.derived or plan.notes:
        lines.append("")
        lines.append(f"{len(plan.derived)} derived edit(s)")
        lines.extend(f"note: {note}" for note in plan.notes)
    return "\n".join(lines) + "\n"


def _evidence(evidence: dict) -> str:
    """``model: "Rome is a city in the country of" -> "Italy" (p=0.81)`` or where the spec says it."""
    if evidence.get("source") == "model":
        return (f"model: {json.dumps(evidence.get('prompt'), ensure_ascii=False)} -> "
                f"{json.dumps(evidence.get('answer'), ensure_ascii=False)} (p={evidence.get('probability', 0):.2f})")
    return f"{evidence.get('source', '?')} at {evidence.get('at', '?')}"
