"""``kvc commit``: compile a spec, edit HEAD's weights, evaluate, gate, and record.

Order of work (the store write is last, so Ctrl-C or a failure anywhere before it leaves
the store exactly as it was):
compile -> refuse contradictions -> check thresholds -> load and verify the base model
-> materialise HEAD -> score the plan's probes -> run each editor call (each delta applied
before the next call) -> score again -> summarize -> gate -> write the commit.
The writer lock is held throughout, so a second writer fails at once (or waits) rather
than after minutes of editing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from kedit_vc.compiler.plan import Plan
from kedit_vc.errors import UsageError
from kedit_vc.eval.gate import GateResult, Threshold, check, thresholds_from
from kedit_vc.eval.report import EvalReport, summarize
from kedit_vc.store import CommitInput

from .errors import CommitRefused, ConflictError
from .evaluate import Evaluator
from .history import LiveEdit, find_conflicts, live_edits
from .plans import override

if TYPE_CHECKING:
    import torch

    from kedit_vc.delta import Delta
    from kedit_vc.store import Store

#: What ``--gate`` asks of a commit when no ``--min-METRIC`` flag says otherwise.
DEFAULT_GATE: Mapping[str, float] = {"reliability": 0.9}


@dataclass(frozen=True)
class CommitOptions:
    message: str | None = None
    method: str | None = None
    hparams: Mapping[str, Any] = field(default_factory=dict)
    minimums: Mapping[str, float] = field(default_factory=dict)
    gate: bool = False
    supersede: bool = False
    wait: bool = False
    progress: bool = False
    eval_batch_size: int = 16
    derive: bool | None = None  # None: the spec's `derive = ...`, else derive when it has rules


@dataclass(frozen=True)
class CommitResult:
    """What a commit did (``sha`` is None when it was refused)."""

    sha: str | None
    plan: Plan
    report: EvalReport
    gate: GateResult | None
    delta: "Delta"
    timings: Mapping[str, float]
    superseded: tuple[LiveEdit, ...] = ()
    method: str = ""  # as recorded: the calls' methods, auto's choice shown (auto→rome)


def gate_thresholds(plan: Plan, options: CommitOptions) -> list[Threshold]:
    minimums = dict(DEFAULT_GATE) if options.gate and not options.minimums else {}
    minimums.update(options.minimums)
    return thresholds_from(plan.expectations, minimums)


def default_message(plan: Plan, spec: str) -> str:
    requests = plan.requests
    facts = ", ".join(f"{r.subject}: {r.target_true or '?'} -> {r.target_new}" for r in requests[:3])
    more = f" (+{len(requests) - 3} more)" if len(requests) > 3 else ""
    return f"{Path(spec).name}: {facts}{more}"


def _merge_keys(into: "dict[int, torch.Tensor]", new: "Mapping[int, torch.Tensor]") -> None:
    import torch

    for layer, keys in new.items():
        keys = keys.detach().float().cpu()
        into[layer] = torch.cat([into[layer], keys]) if layer in into else keys


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


@dataclass(frozen=True)
class PlanRun:
    """What running a plan's editor calls produced: the summed ``delta``, the ``keys``
    written (layer -> [n, d_in]), each call's ``infos``, and the calls' summed ``carried``
    contributions (name -> tensor; the commit records them), and the non-weight ``patches``
    the calls returned, in order."""

    delta: "Delta"
    keys: "dict[int, torch.Tensor]"
    infos: list[dict[str, Any]]
    carried: "dict[str, torch.Tensor]"
    patches: tuple[Any, ...] = ()


def execute_plan(evaluator: Evaluator, plan: Plan, preserved: "Mapping[int, torch.Tensor]", progress: bool,
                 carried: "Mapping[str, torch.Tensor] | None" = None) -> PlanRun:
    """Run each editor call on the current weights, applying each delta before the next.

    ``carried``: the carried state of the history edited on (``Store.carried_state``); each
    call sees it plus what the earlier calls of this plan contributed.
    """
    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.store.carried import summed

    loaded, weights = evaluator.loaded, evaluator.weights
    total: "Delta | None" = None
    keys: "dict[int, torch.Tensor]" = {}
    contributions: "list[Mapping[str, torch.Tensor]]" = []
    infos = []
    patches: tuple[Any, ...] = ()
    for call in plan.calls:
        context = EditContext(fingerprint=evaluator.store.fingerprint, progress=progress,
                              preserved_keys=_joined(preserved, keys),
                              carried=summed([carried or {}, *contributions]))
        with weights.side.editing():  # an edit memory is context, not the model an editor edits
            result = get_editor(call.method).edit(loaded.model, loaded.tokenizer, call.requests,
                                                  build_hparams(call.method, call.hparams), context)
        delta = result.delta
        weights.apply(delta)
        weights.attach(result.patches)
        patches += result.patches
        evaluator.mark_changed()
        total = delta if total is None else total.compose(delta)
        _merge_keys(keys, result.written_keys)
        if result.carried:
            contributions.append({name: t.detach().cpu() for name, t in result.carried.items()})
        infos.append({"method": call.method, "edits": len(call.requests), **_jsonable(dict(result.info))})
    assert total is not None
    return PlanRun(total, keys, infos, summed(contributions), patches)


def run_plan(evaluator: Evaluator, plan: Plan, preserved: "Mapping[int, torch.Tensor]", progress: bool
             ) -> tuple["Delta", "dict[int, torch.Tensor]", list[dict[str, Any]]]:
    """``execute_plan`` without carried state: the summed delta, the keys written and each call's info."""
    run = execute_plan(evaluator, plan, preserved, progress)
    return run.delta, run.keys, run.infos


def _joined(a: "Mapping[int, torch.Tensor]", b: "Mapping[int, torch.Tensor]") -> "dict[int, torch.Tensor]":
    out = dict(a)
    _merge_keys(out, b)
    return out


def commit_spec(store: "Store", spec: str | Path, options: CommitOptions = CommitOptions()) -> CommitResult:
    """Edit, evaluate and record ``spec``; raises ``CommitRefused`` (nothing written) if the gate fails."""
    started = time.perf_counter()
    with store.lock(options.wait):
        evaluator = Evaluator(store, progress=options.progress, batch_size=options.eval_batch_size)
        plan, spec_text = compile_for(store, spec, options, evaluator)
        return commit_plan(store, plan, spec_text, Path(spec).name, options, started=started,
                           evaluator=evaluator)


def compile_for(store: "Store", spec: str | Path, options: CommitOptions,
                evaluator: Evaluator | None = None) -> tuple[Plan, str]:
    """``spec``'s plan with the options' method/hparams, checked against the store's model.

    Derived edits (``options.derive``, else the spec's choice) are asked of the unedited
    base model, so a plan depends only on the spec and the base: a resumed
    ``--batch-size`` run derives exactly what the first run did.
    """
    from kedit_vc.compiler import derive, should_derive
    from kedit_vc.compiler.lower import lower
    from kedit_vc.lang import load

    program = load(spec)
    plan = lower(program)
    if should_derive(program, options.derive):
        from .derive import ModelOracle

        evaluator = evaluator or Evaluator(store, progress=options.progress, batch_size=options.eval_batch_size)
        loaded = evaluator.loaded
        evaluator.to_base()
        plan = derive(program, plan, ModelOracle(loaded.model, loaded.tokenizer))
    plan = override(plan, options.method, options.hparams)
    spec_text = Path(spec).read_text(encoding="utf-8")
    if not plan.requests:
        raise UsageError(f"{spec} has no edits to commit")
    if plan.model is not None and plan.model != store.model_ref:
        raise UsageError(f"{spec} is written for model {plan.model!r}, but this store's base model is "
                         f"{store.model_ref!r}; edit its `model` line or use a store for that model")
    return plan, spec_text


def commit_plan(store: "Store", plan: Plan, spec_text: str, spec_name: str,
                options: CommitOptions = CommitOptions(), *, started: float | None = None,
                extra: Mapping[str, Any] | None = None, evaluator: Evaluator | None = None) -> CommitResult:
    """Edit, evaluate, gate and record an already compiled ``plan`` (the lock is taken here).

    ``extra`` goes into the manifest beside the usual facts (``--batch-size`` records its
    chunk there); ``evaluator`` lets consecutive commits share one loaded model.
    """
    from kedit_vc.eval.efficiency import measure

    timings: dict[str, float] = {}
    started = time.perf_counter() if started is None else started
    with store.lock(options.wait):
        head = store.head()
        live = live_edits(store, head)
        conflicts = find_conflicts(live, plan.requests)
        if conflicts and not options.supersede:
            raise ConflictError(conflicts)
        thresholds = gate_thresholds(plan, options)
        timings["compile_s"] = time.perf_counter() - started

        if evaluator is None:
            evaluator = Evaluator(store, progress=options.progress, batch_size=options.eval_batch_size)
        mark = time.perf_counter()
        evaluator.load()
        timings["load_s"] = time.perf_counter() - mark
        requests = plan.requests
        mark = time.perf_counter()
        before = evaluator.scores_at(head, requests)  # materialises HEAD unless cached
        evaluator.move_to(head)
        timings["before_s"] = time.perf_counter() - mark
        carried = store.carried_state(head)
        with measure() as watch:
            run = execute_plan(evaluator, plan, store.live_keys(head), options.progress, carried)
        delta, keys, infos = run.delta, run.keys, run.infos
        assert watch.result is not None
        timings["edit_s"] = watch.result.seconds
        mark = time.perf_counter()
        after = evaluator.score_now(requests)
        timings["after_s"] = time.perf_counter() - mark
        efficiency = {**watch.result.as_metrics(), "delta_bytes": float(delta.summary().stored_bytes)}
        report = summarize(after, before, extra=efficiency)
        gate = check(report, thresholds) if thresholds else None
        superseded = tuple(old for old, _ in conflicts)
        result = CommitResult(None, plan, report, gate, delta, timings, superseded)
        if gate is not None and gate.failed:
            raise CommitRefused(result)

        methods = sorted({info["method"] for info in infos})  # an editor may name itself (auto→rome)
        hparams = dict(plan.calls[0].hparams) if len(plan.calls) == 1 else {
            "calls": [{"method": c.method, "hparams": dict(c.hparams)} for c in plan.calls]}
        timings["total_s"] = time.perf_counter() - started
        payload = CommitInput(
            message=options.message or default_message(plan, spec_name),
            delta=delta,
            spec_text=spec_text,
            spec_name=spec_name,
            plan=plan.to_json(),
            metrics=report.to_json(),
            method=",".join(methods),
            hparams=hparams,
            edit_ids=tuple(r.edit_id for r in requests),
            timings={k: round(v, 4) for k, v in timings.items()},
            keys=keys,
            carried=run.carried,
            patches=run.patches,
            extra={
                "efficiency": {"seconds": round(efficiency["seconds"], 4),
                               "peak_rss_bytes": int(efficiency["peak_rss_bytes"]),
                               "delta_bytes": int(efficiency["delta_bytes"])},
                "editor_info": infos,
                "supersedes": sorted({old.request.edit_id for old in superseded}),
                "gate": [t.__dict__ for t in thresholds],
                **dict(extra or {}),
            },
        )
        sha = store.write_commit(payload, expected_head=head)
        evaluator.cache.put(sha, requests, after)
    return CommitResult(sha, plan, report, gate, delta, timings, superseded, ",".join(methods))
