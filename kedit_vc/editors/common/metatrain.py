"""Meta-training of a learned editor (MEND, KE) on edit records, resumable, on a CPU.

Every step samples ``edits_per_step`` training facts (the sample is a function of the
seed and the step number, so a resumed run draws what an uninterrupted one would). For
each fact: the gradient factors of its edit loss (new object after the rewrite prompt)
at the edited layers, the network's update from them, and, with that update added, the
edit loss on the fact's equivalence prompts (the rewrite prompt and its paraphrases) and
the KL of the base model's next-token distribution to the edited one on its locality
prompts (neighbours). The loss is ``c_edit · L_edit + c_loc · L_loc`` (MEND section 3.2;
KE's constrained objective with a fixed multiplier).

Only blocks at or above the lowest edited layer change, so the hidden states below it
are computed once per sequence and replayed (``LowerBlockReplay``): a step costs a few
blocks, not the whole model.

Checkpoints (``checkpoint.safetensors`` + ``checkpoint.json``: network, Adam state, step,
history) are written every ``checkpoint_every`` steps into the editor's folder; a run
started again with the same training settings resumes from the last one, and a run asked
for more steps than a finished one continues it (``steps`` is not part of the signature).
"""

from __future__ import annotations

import hashlib
import json
import math
import resource
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.errors import UsageError
from kedit_vc.models.forward import LowerBlockReplay, final_hidden, logits_from_hidden
from kedit_vc.models.prompting import encode_continuation, encode_text, pad_batch, pad_id

from .learned import (
    EDITOR_JSON,
    EditBatch,
    GradientFactors,
    gradient_factors,
    lowrank_added,
    make_batch,
    save_editor,
    token_nll,
)

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_JSON = "checkpoint.json"


class EditorNetwork(Protocol):
    """What the trainer needs of a learned editor's network (an ``nn.Module``)."""

    def factors(self, factors: GradientFactors, condition: torch.Tensor | None = None
                ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]: ...

    def parameters(self) -> Any: ...

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


@dataclass(frozen=True)
class TrainSettings:
    """How the network is trained (recorded in ``editor.json``; not part of the cache key)."""

    steps: int = 400
    edits_per_step: int = 4
    # The reference's 1e-6 (MEND) is for ~100k GPU steps; 1e-3 learns in the 400 CPU steps of
    # bench/results/counterfact50_mend.json.
    lr: float = 1e-3
    lr_lr: float = 1e-4
    c_edit: float = 0.1
    c_loc: float = 1.0
    max_paraphrases: int = 2
    max_neighbours: int = 3
    seed: int = 0
    checkpoint_every: int = 25


@dataclass(frozen=True)
class Example:
    """One training fact as token ids: ``edit`` (prompt, target), ``outer`` equivalence
    pairs, ``loc`` locality pairs, ``condition`` the edit's text for KE."""

    edit_id: str
    edit: tuple[tuple[int, ...], tuple[int, ...]]
    outer: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    loc: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    condition: tuple[int, ...]


def condition_text(request: EditRequest) -> str:
    """KE's conditioning text: the rewrite prompt, the old object and the new one."""
    return f"{request.rewrite_prompt} || {request.target_true or ''} || {request.target_new}"


def condition_ids(tokenizer: Any, request: EditRequest) -> tuple[int, ...]:
    return tuple(encode_continuation(tokenizer, condition_text(request)))


def edit_pair(tokenizer: Any, prompt: str, target: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(prompt ids with the shared prefix, target ids with a leading space)."""
    return tuple(encode_text(tokenizer, prompt)), tuple(encode_continuation(tokenizer, " " + target))


def request_batch(tokenizer: Any, requests: Sequence[EditRequest]) -> EditBatch:
    """The edit batch of ``requests``: each new object after its rewrite prompt."""
    return make_batch([edit_pair(tokenizer, r.rewrite_prompt, r.target_new) for r in requests], pad_id(tokenizer))


def example_of(tokenizer: Any, request: EditRequest, settings: TrainSettings) -> Example:
    edit = edit_pair(tokenizer, request.rewrite_prompt, request.target_new)
    paraphrases = [p for p in request.probes if p.kind == "paraphrase"][:settings.max_paraphrases]
    neighbours = [p for p in request.probes if p.kind == "neighbour"][:settings.max_neighbours]
    outer = (edit,) + tuple(edit_pair(tokenizer, p.prompt, request.target_new) for p in paraphrases)
    loc = tuple(edit_pair(tokenizer, p.prompt, p.target) for p in neighbours)
    return Example(request.edit_id, edit, outer, loc, condition_ids(tokenizer, request))


# ---------------------------------------------------------------------------------------
# Data


def sniff_format(path: str) -> str:
    """The import format of a JSON file of records, from its first record's fields."""
    from kedit_vc.importers.base import read_records

    records = read_records(path)
    if not records:
        raise UsageError(f"{path}: no records")
    first = records[0]
    if "requested_rewrite" in first:
        return "mquake" if isinstance(first["requested_rewrite"], list) else "counterfact"
    if "src" in first and "alt" in first:
        return "zsre"
    if "prompt" in first and "target_new" in first:
        return "easyedit"
    raise UsageError(f"{path}: cannot tell the format from the fields {sorted(first)[:8]}; write FORMAT:FILE "
                     "(counterfact, zsre, easyedit, mquake)")


@dataclass(frozen=True)
class DataSplit:
    """Training requests and what was held out of each file (never trained on)."""

    train: tuple[EditRequest, ...]
    held_out: tuple[dict[str, Any], ...]
    files: tuple[dict[str, Any], ...]


def load_split(data: Sequence[str], held_out: int, limit: int | None) -> DataSplit:
    """Read every ``[FORMAT:]FILE``; the first ``held_out`` facts of each file are held out,
    the rest (at most ``limit`` in all) are for training."""
    from kedit_vc.compiler import compile_text
    from kedit_vc.importers import IMPORTERS, import_file

    train: list[EditRequest] = []
    held: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    for item in data:
        kind, _, path = item.partition(":") if item.split(":", 1)[0] in IMPORTERS else ("", "", item)
        kind = kind or sniff_format(path)
        requests = list(compile_text(import_file(kind, path).text).requests)
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        files.append({"path": str(Path(path).resolve()), "format": kind, "sha256": digest, "facts": len(requests)})
        held.append({"path": str(Path(path).resolve()), "first": held_out,
                     "edit_ids": [r.edit_id for r in requests[:held_out]]})
        train.extend(requests[held_out:])
    if limit is not None:
        train = train[:limit]
    if not train:
        raise UsageError("no training facts left after the held-out split; lower --held-out or add --data")
    return DataSplit(tuple(train), tuple(held), tuple(files))


# ---------------------------------------------------------------------------------------
# Lower-block cache


class UpperRunner:
    """Forwards that run only the blocks from ``first`` up, replaying cached lower outputs."""

    def __init__(self, model: torch.nn.Module, first: int) -> None:
        self.model = model
        self.first = first
        self.cache: dict[tuple[int, ...], torch.Tensor] = {}
        self.replay = LowerBlockReplay(model, first)
        self.armed = False

    def __enter__(self) -> "UpperRunner":
        self.replay.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.replay.__exit__(*exc)

    def precompute(self, sequences: Sequence[tuple[int, ...]], pad: int, batch_size: int = 16,
                   progress: Callable[[int], None] | None = None) -> None:
        """Run the whole model once over each new sequence, keeping block ``first-1``'s output."""
        if self.first == 0:
            return
        todo = sorted({s for s in sequences if s not in self.cache}, key=len)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            ids, mask = pad_batch(chunk, pad)
            with torch.no_grad():
                final_hidden(self.model, ids, mask)
            out = self.replay.recorded
            hidden = out[0] if isinstance(out, tuple) else out
            for row, seq in enumerate(chunk):
                self.cache[seq] = hidden[row, :len(seq)].clone()
            if progress is not None:
                progress(len(chunk))
        if not self.armed:
            self.replay.arm()
            self.armed = True

    def logits(self, model: torch.nn.Module, batch: EditBatch) -> torch.Tensor:
        """Logits [n, vocab] at the batch's target positions."""
        if self.first > 0:
            width = batch.input_ids.shape[1]
            rows = []
            for row in range(batch.input_ids.shape[0]):
                length = int(batch.mask[row].sum())
                seq = tuple(int(t) for t in batch.input_ids[row, :length])
                cached = self.cache[seq]
                rows.append(F.pad(cached, (0, 0, 0, width - length)))
            hidden = torch.stack(rows)
            recorded = self.replay.recorded
            self.replay.current = (hidden,) + tuple(recorded[1:]) if isinstance(recorded, tuple) else hidden
        out = final_hidden(model, batch.input_ids, batch.mask)
        return logits_from_hidden(model, out[batch.rows, batch.cols])


def _sequence(pair: tuple[tuple[int, ...], tuple[int, ...]]) -> tuple[int, ...]:
    prompt, target = pair
    return tuple(prompt) + tuple(target[:-1])


# ---------------------------------------------------------------------------------------
# Training


@dataclass
class StepLosses:
    loss: float
    edit: float
    loc: float
    pre: float
    success: float


@dataclass
class TrainState:
    """Where a run is: the next step and the per-step history (means over the step's facts)."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def step_losses(network: Any, model: torch.nn.Module, runner: UpperRunner, layers: Sequence[int],
                example: Example, settings: TrainSettings, pad: int, observe: bool) -> tuple[torch.Tensor, StepLosses]:
    """One fact's meta-loss (differentiable in the network's parameters) and its parts."""
    edit_batch = make_batch([example.edit], pad)
    factors, pre = gradient_factors(model, layers, edit_batch, forward=runner.logits)
    if observe and hasattr(network, "observe"):
        network.observe(factors)
    condition = torch.tensor(example.condition, dtype=torch.long)
    update = network.factors(factors, condition)
    outer = make_batch(list(example.outer), pad)
    loc = make_batch(list(example.loc), pad) if example.loc else None
    base_loc = None
    if loc is not None:
        with torch.no_grad():
            base_loc = F.log_softmax(runner.logits(model, loc).float(), -1)
    with lowrank_added(model, update):
        nll = token_nll(runner.logits(model, outer), outer) * outer.weights
        l_edit = nll.sum() / len(example.outer)
        if loc is not None and base_loc is not None:
            post = F.log_softmax(runner.logits(model, loc).float(), -1)
            l_loc = (base_loc.exp() * (base_loc - post)).sum(-1).mean()
        else:
            l_loc = torch.zeros(())
    first_tokens = outer.rows == 0
    success = float(math.exp(-float((nll[first_tokens]).sum().detach())))
    loss = settings.c_edit * l_edit + settings.c_loc * l_loc
    return loss, StepLosses(float(loss.detach()), float(l_edit.detach()), float(l_loc.detach()), pre, success)


def _param_groups(network: Any, settings: TrainSettings) -> list[dict[str, Any]]:
    lrs = [p for n, p in network.named_parameters() if n == "edit_lrs"]
    rest = [p for n, p in network.named_parameters() if n != "edit_lrs"]
    groups = [{"params": rest, "lr": settings.lr}]
    if lrs:
        groups.append({"params": lrs, "lr": settings.lr_lr})
    return groups


def save_checkpoint(folder: Path, network: Any, optimiser: torch.optim.Optimizer, state: TrainState,
                    signature: str) -> None:
    """Network, Adam state, step and history, as safetensors + JSON (atomic)."""
    from safetensors.torch import save_file

    from kedit_vc.fsio import atomic_write_text

    tensors = {f"net.{k}": v.detach().clone().contiguous() for k, v in network.state_dict().items()}
    opt = optimiser.state_dict()
    for index, entry in opt["state"].items():
        for name, value in entry.items():
            tensors[f"opt.{index}.{name}"] = torch.as_tensor(value).clone().contiguous()
    groups = [{k: v for k, v in g.items()} for g in opt["param_groups"]]
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / (CHECKPOINT_TENSORS + ".tmp")
    save_file(tensors, str(temporary))
    temporary.replace(folder / CHECKPOINT_TENSORS)
    atomic_write_text(folder / CHECKPOINT_JSON, json.dumps(
        {"step": state.step, "history": state.history, "signature": signature, "param_groups": groups},
        sort_keys=True))


def load_checkpoint(folder: Path, network: Any, optimiser: torch.optim.Optimizer, signature: str
                    ) -> TrainState | None:
    """The saved state (network and optimiser loaded in place), or None if none fits."""
    from safetensors.torch import load_file

    meta_path, tensor_path = folder / CHECKPOINT_JSON, folder / CHECKPOINT_TENSORS
    if not meta_path.is_file() or not tensor_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError:
        return None
    if meta.get("signature") != signature:
        return None
    tensors = load_file(str(tensor_path))
    network.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimiser.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return TrainState(int(meta["step"]), list(meta["history"]))


@dataclass(frozen=True)
class TrainOutcome:
    folder: Path
    editor_hash: str
    record: Mapping[str, Any]
    reused: bool


def train_network(network: Any, model: torch.nn.Module, tokenizer: Any, layers: Sequence[int],
                  split: DataSplit, settings: TrainSettings, folder: Path, record: Mapping[str, Any],
                  progress: bool = True, stop_after: int | None = None) -> TrainOutcome:
    """Train ``network`` (resuming from ``folder``'s checkpoint) and save the trained editor.

    ``record``: method, fingerprint, settings and model reference for ``editor.json``.
    ``stop_after``: stop (checkpointed) after this step, as a kill would (tests).
    """
    # Everything but the step count: a run asked for more steps continues from the last checkpoint.
    continued = {k: v for k, v in asdict(settings).items() if k != "steps"}
    signature = hashlib.sha256(json.dumps({"record": dict(record), "settings": continued,
                                           "files": list(split.files), "held_out": list(split.held_out),
                                           "train": [r.edit_id for r in split.train]},
                                          sort_keys=True, default=list).encode()).hexdigest()
    done = folder / EDITOR_JSON
    if done.is_file():
        existing = json.loads(done.read_text())
        training = existing.get("training", {})
        if training.get("signature") == signature and training.get("settings", {}).get("steps") == settings.steps:
            return TrainOutcome(folder, existing["editor_hash"], existing, True)
    started = time.perf_counter()
    pad = pad_id(tokenizer)
    examples = [example_of(tokenizer, r, settings) for r in split.train]
    network.train()
    optimiser = torch.optim.Adam(_param_groups(network, settings))
    initial = {k: v.clone() for k, v in network.state_dict().items()}
    state = load_checkpoint(folder, network, optimiser, signature) or TrainState()
    if state.step > settings.steps:  # a longer run of these settings exists: fewer steps start afresh
        network.load_state_dict(initial)
        optimiser = torch.optim.Adam(_param_groups(network, settings))
        state = TrainState()
    resumed_from = state.step
    first = min(layers)
    with UpperRunner(model, first) as runner, _bar(progress, settings.steps, state.step) as bar:
        sequences = [_sequence(p) for ex in examples for p in (ex.edit, *ex.outer, *ex.loc)]
        with _precompute_bar(progress, len(set(sequences))) as advance:
            runner.precompute(sequences, pad, progress=advance)
        while state.step < settings.steps:
            generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + state.step)
            picks = torch.randint(len(examples), (settings.edits_per_step,), generator=generator).tolist()
            optimiser.zero_grad()
            parts = []
            for index in picks:
                loss, losses = step_losses(network, model, runner, layers, examples[index], settings, pad,
                                           observe=True)
                (loss / len(picks)).backward()
                parts.append(losses)
            optimiser.step()
            state.step += 1
            mean = {k: sum(getattr(p, k) for p in parts) / len(parts) for k in ("loss", "edit", "loc", "pre",
                                                                                  "success")}
            state.history.append({"step": state.step, **{k: round(v, 5) for k, v in mean.items()}})
            bar(state.step, mean)
            if state.step % settings.checkpoint_every == 0 or state.step == settings.steps:
                save_checkpoint(folder, network, optimiser, state, signature)
            if stop_after is not None and state.step >= stop_after:
                return TrainOutcome(folder, "", {}, False)
    network.eval()
    tail = state.history[-20:]
    training = {
        "signature": signature, "settings": asdict(settings), "files": list(split.files),
        "held_out": list(split.held_out), "train_facts": len(examples),
        "train_edit_ids": [r.edit_id for r in split.train],
        "wall_seconds_this_run": round(time.perf_counter() - started, 2), "resumed_from_step": resumed_from,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "threads": torch.get_num_threads(),
        "final": {k: round(sum(h[k] for h in tail) / len(tail), 5) for k in ("loss", "edit", "loc", "success")}
        if tail else {},
        "history_every_10": [h for h in state.history if h["step"] % 10 == 0],
    }
    full = {**dict(record), "training": training}
    digest = save_editor(folder, dict(network.state_dict()), full)
    return TrainOutcome(folder, digest, {**full, "editor_hash": digest}, False)


@contextmanager
def _precompute_bar(enabled: bool, total: int) -> Iterator[Callable[[int], None] | None]:
    """A bar over the sequences whose lower-block states are computed before training."""
    if not enabled or total == 0:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("lower blocks, once per sequence"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("precompute", total=total)
        yield lambda n: bar.advance(task, n)


class _bar:
    """A rich progress bar with the step's loss, edit NLL, locality KL and ETA (no-op when off)."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self.enabled, self.total, self.done = enabled, total, done
        self.progress: Any = None

    def __enter__(self) -> "_bar":
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                     TextColumn("loss {task.fields[loss]:.3f} edit {task.fields[edit]:.3f} "
                                                "loc {task.fields[loc]:.4f}"),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
            self.progress.__enter__()
            self.task = self.progress.add_task("train", total=self.total, completed=self.done,
                                               loss=float("nan"), edit=float("nan"), loc=float("nan"))
        return self

    def __call__(self, step: int, mean: Mapping[str, float]) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=mean["loss"], edit=mean["edit"], loc=mean["loc"])

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)
