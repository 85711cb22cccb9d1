"""``kvc commit --batch-size N``: a large spec committed in chunks, one commit per chunk.

The plan's requests are cut, in spec order, into chunks of ``N`` (each keeps its call's
method and hyperparameters). Each chunk is an ordinary commit (edit, evaluate, gate,
write), so a kill or Ctrl-C loses at most the chunk in progress. Run again, a chunk
whose edits are all live at HEAD already (same edit ids) is skipped, so the run resumes
after the last finished chunk and the result equals an uninterrupted run: chunk
boundaries depend only on the spec and ``N``, and each chunk starts from HEAD as the
store materialises it (``Evaluator.move_to``), as a new process would. One model load
serves every chunk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from kedit_vc.compiler.plan import EditorCall, EditRequest, Plan
from kedit_vc.errors import UsageError

from .commit import CommitOptions, CommitResult, commit_plan, compile_for
from .evaluate import Evaluator
from .history import live_edits

if TYPE_CHECKING:
    from kedit_vc.store import Store


@dataclass(frozen=True)
class ChunkEvent:
    """What happened to one chunk: ``committed`` (with its result) or ``skipped`` (already live)."""

    index: int              # 0-based
    chunks: int
    edits: int              # edits in this chunk
    done_edits: int         # edits finished so far, this chunk included
    total_edits: int
    status: str             # "committed" | "skipped"
    result: CommitResult | None = None
    seconds: float = 0.0


def split_plan(plan: Plan, size: int) -> list[Plan]:
    """``plan``'s requests in spec order, ``size`` per chunk, each with its own call's settings.

    A derived request stays in its parent's chunk (that chunk may then hold more than
    ``size``), so reverting the commit of an edit reverts what was derived from it.
    """
    if size < 1:
        raise UsageError(f"--batch-size must be at least 1 (got {size})")
    flat = [(call, request) for call in plan.calls for request in call.requests]
    groups: list[list[tuple[EditorCall, EditRequest]]] = []
    for pair in flat:
        if pair[1].derived is not None and groups:
            groups[-1].append(pair)  # derive() places derived requests right after their parent
        else:
            groups.append([pair])
    chunks = []
    for start in range(0, len(groups), size):
        calls: list[EditorCall] = []
        for call, request in [pair for group in groups[start:start + size] for pair in group]:
            if calls and calls[-1].method == call.method and calls[-1].hparams == call.hparams:
                calls[-1] = EditorCall(call.method, call.hparams, calls[-1].requests + (request,))
            else:
                calls.append(EditorCall(call.method, call.hparams, (request,)))
        chunks.append(Plan(calls=tuple(calls), model=plan.model, expectations=plan.expectations))
    return chunks


def commit_in_batches(store: "Store", spec: str | Path, size: int, options: CommitOptions | None = None,
                      on_event: Callable[[ChunkEvent], None] | None = None) -> list[ChunkEvent]:
    """Commit ``spec`` in chunks of ``size`` edits, skipping chunks already live at HEAD.

    Raises what a single commit raises (``CommitRefused`` for a chunk that misses its gate,
    ``ConflictError``); the chunks committed before it stay, and a rerun resumes there.
    """
    options = options or CommitOptions()
    events: list[ChunkEvent] = []
    with store.lock(options.wait):
        evaluator = Evaluator(store, progress=options.progress, batch_size=options.eval_batch_size)
        plan, spec_text = compile_for(store, spec, options, evaluator)
        chunks = split_plan(plan, size)
        live_ids = {edit.request.edit_id for edit in live_edits(store, store.head())}
        total, done = len(plan.requests), 0
        base_message = options.message or f"{Path(spec).name}"
        for index, chunk in enumerate(chunks):
            started = time.perf_counter()
            n = len(chunk.requests)
            done += n
            if all(r.edit_id in live_ids for r in chunk.requests):
                event = ChunkEvent(index, len(chunks), n, done, total, "skipped")
            else:
                chunk_options = replace(options, message=f"{base_message} [chunk {index + 1}/{len(chunks)}]")
                batch = {"batch": {"spec": Path(spec).name, "size": size, "chunk": index + 1,
                                   "chunks": len(chunks)}}
                result = commit_plan(store, chunk, spec_text, Path(spec).name, chunk_options,
                                     extra=batch, evaluator=evaluator)
                event = ChunkEvent(index, len(chunks), n, done, total, "committed", result,
                                   time.perf_counter() - started)
            events.append(event)
            if on_event is not None:
                on_event(event)
    return events


def eta_seconds(events: Sequence[ChunkEvent]) -> float | None:
    """Seconds left at the mean pace of the chunks committed in this run (None before the first)."""
    committed = [e for e in events if e.status == "committed"]
    if not committed or not events:
        return None
    per_edit = sum(e.seconds for e in committed) / sum(e.edits for e in committed)
    last = events[-1]
    return per_edit * (last.total_edits - last.done_edits)
