"""SERAC's scope classifier: does a prompt fall in the scope of a stored edit?

Named simplification of the paper (Mitchell et al. 2022, arXiv 2206.06520), whose best
classifier is a fine-tuned cross-encoder: this one is an **embedding (dual-encoder)
classifier over the frozen base model**. Both sides are the base model's states at block
``layer`` (the edit's key: the state of the rewrite prompt's last subject token, as the
edit memory's retriever keys facts; the query: the state at each position), projected by
a trained ``proj`` [d, r] and compared by cosine; ``logit = scale * cos + bias``. A query's
score for an edit at position i is the highest logit over positions 1..i (causal, so a
teacher-forced answer never decides its own scope), and the prompt's score is that at its
last position. Only ``proj``, ``scale`` and ``bias`` are trained; the encoder is frozen,
so features are computed once and training is cheap on a CPU.

Training pairs (per record with an edit): positives, the rewrite prompt and paraphrases;
hard negatives, its neighbourhood prompts (same relation, other subjects: what the paper's
hard negatives are for); easy negatives, other records' prompts. Records are split by a
hash of their id into training and held-out sets; held-out accuracy is reported.

Files (no pickle): ``classifier.safetensors`` (``proj``, ``scale``, ``bias``; metadata
``format`` = ``kvc-serac-classifier``) beside ``classifier.json`` (settings, base-model
fingerprint, data, held-out metrics, seconds and the content ``hash``: sha256 of the
tensors' bytes and the canonical settings JSON). A checkpoint (``checkpoint.safetensors``:
parameters, Adam moments and step; ``checkpoint.json``) is written every
``checkpoint_every`` steps, and training resumes from it to the same state.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.errors import EditError

FORMAT = "kvc-serac-classifier"
FORMAT_VERSION = "1"
CLASSIFIER = "classifier.safetensors"
META = "classifier.json"
CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"
TRAIN_COMMAND = "kvc train serac --model MODEL --data FILE"


class ClassifierError(EditError):
    """A SERAC scope classifier is missing, altered or made for another model."""


@dataclass(frozen=True)
class TrainSettings:
    """What a classifier is trained with; the cache key hashes these with the data and the model."""

    layer: int
    rank: int
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    holdout: float = 0.1
    negatives: int = 4
    checkpoint_every: int = 50

    def key(self, fingerprint: str, data_digest: str) -> str:
        text = json.dumps({"settings": asdict(self), "fingerprint": fingerprint, "data": data_digest},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- the head -------------------------------------------------------------------------


def init_params(d: int, rank: int, seed: int) -> dict[str, torch.Tensor]:
    """Initial head: ``proj`` [d, r] (identity when r = d, else a seeded orthonormal basis),
    ``scale`` and ``bias`` [1] set so the untrained head is a cosine threshold at 0.8."""
    if rank == d:
        proj = torch.eye(d)
    else:
        generator = torch.Generator().manual_seed(seed)
        proj = torch.linalg.qr(torch.randn(d, rank, generator=generator))[0]
    return {"proj": proj.contiguous(), "scale": torch.tensor([10.0]), "bias": torch.tensor([-8.0])}


def logits(params: Mapping[str, torch.Tensor], queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Per-position logits [..., t, n] of query states [..., t, d] against edit keys [n, d]."""
    proj = params["proj"]
    q = queries.float() @ proj
    k = keys.float() @ proj
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    k = k / k.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return params["scale"] * (q @ k.T) + params["bias"]


def causal_scores(params: Mapping[str, torch.Tensor], hidden: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Scope probabilities [t, n] of a query's positions (states [t, d]): at position i, the
    sigmoid of the best logit over positions 1..i (position 0 scores alone)."""
    out = logits(params, hidden, keys)
    if out.shape[0] > 1:
        out = torch.cat([out[:1], torch.cummax(out[1:], dim=0).values], dim=0)
    return torch.sigmoid(out)


# -- features -------------------------------------------------------------------------


@dataclass
class Features:
    """Frozen-encoder features of training records: keys [n, d]; prompts' states padded to
    [m, t, d] with a mask [m, t] (position 0 masked out unless it is the only one); for
    each prompt its record and whether it is in that record's scope."""

    keys: torch.Tensor
    states: torch.Tensor
    mask: torch.Tensor
    owner: torch.Tensor
    positive: torch.Tensor


def record_prompts(request: EditRequest) -> list[tuple[str, bool]]:
    """The prompts of a record with whether each is in the edit's scope."""
    out = [(request.rewrite_prompt, True)]
    out += [(p.prompt, True) for p in request.probes if p.kind == "paraphrase"]
    out += [(p.prompt, False) for p in request.probes if p.kind == "neighbour"]
    return out


def features(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest], layer: int,
             report: Callable[[int], None] | None = None) -> Features:
    """Encode every record's key and prompts with the frozen model (one forward per text, up to ``layer``)."""
    from kedit_vc.editors.common.incontext import subject_end
    from kedit_vc.models.families import decoder_stack
    from kedit_vc.models.prompting import encode_text
    from kedit_vc.patches.memory.embed import hidden_states

    device = next(model.parameters()).device
    forward = decoder_stack(model).forward
    keys, rows, owners, positive = [], [], [], []
    for index, request in enumerate(requests):
        ids = encode_text(tokenizer, request.rewrite_prompt)
        hidden = hidden_states(model, forward, torch.tensor([ids], device=device), None, layer)[0].cpu()
        keys.append(hidden[min(subject_end(tokenizer, request), hidden.shape[0] - 1)])
        for prompt, inside in record_prompts(request):
            ids = encode_text(tokenizer, prompt)
            rows.append(hidden_states(model, forward, torch.tensor([ids], device=device), None, layer)[0].cpu())
            owners.append(index)
            positive.append(inside)
        if report is not None:
            report(index)
    width = max(r.shape[0] for r in rows)
    d = rows[0].shape[1]
    states = torch.zeros(len(rows), width, d)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        states[i, :r.shape[0]] = r
        mask[i, 1 if r.shape[0] > 1 else 0:r.shape[0]] = True
    return Features(torch.stack(keys), states, mask, torch.tensor(owners), torch.tensor(positive))


def split(requests: Sequence[EditRequest], holdout: float) -> tuple[list[int], list[int]]:
    """Training and held-out record indices, by a hash of each record's id (stable under reordering)."""
    train: list[int] = []
    held: list[int] = []
    for i, request in enumerate(requests):
        h = int(hashlib.sha256(request.edit_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if h < holdout else train).append(i)
    if not train:
        train, held = held, []
    return train, held


def _pairs(feats: Features, records: Sequence[int], negatives: int, generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All (prompt, key, label) pairs of ``records``: each prompt with its own record's key
    (labelled by scope) and with ``negatives`` other records' keys (label 0)."""
    allowed = set(records)
    prompt_idx = [i for i in range(len(feats.owner)) if int(feats.owner[i]) in allowed]
    pool = torch.tensor(list(records))
    rows: list[tuple[int, int, float]] = []
    for i in prompt_idx:
        own = int(feats.owner[i])
        rows.append((i, own, float(feats.positive[i])))
        if len(pool) > 1:
            rows += [(i, j, 0.0) for j in pool[torch.randint(len(pool), (negatives,), generator=generator)].tolist()
                     if j != own]
    return (torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows]),
            torch.tensor([r[2] for r in rows]))


def pair_logits(params: Mapping[str, torch.Tensor], feats: Features, prompts: torch.Tensor,
                keys: torch.Tensor) -> torch.Tensor:
    """Prompt-level logits [b]: the best over each prompt's real positions against its paired key."""
    proj = params["proj"]
    q = feats.states[prompts] @ proj                                     # [b, t, r]
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    k = feats.keys[keys] @ proj                                          # [b, r]
    k = k / k.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    cos = (q * k[:, None, :]).sum(-1)                                    # [b, t]
    cos = cos.masked_fill(~feats.mask[prompts], -2.0)
    return params["scale"] * cos.max(dim=1).values + params["bias"]


@torch.no_grad()
def evaluate(params: Mapping[str, torch.Tensor], feats: Features, records: Sequence[int], seed: int,
             negatives: int) -> dict[str, float | int | None]:
    """Accuracy at probability 0.5 on ``records``' pairs: in-scope recall, out-of-scope
    (neighbour) rejection and other-record rejection."""
    if not records:
        return {"records": 0, "accuracy": None, "in_scope_recall": None, "neighbour_rejection": None,
                "other_rejection": None}
    prompts, keys, labels = _pairs(feats, records, negatives, torch.Generator().manual_seed(seed + 7919))
    predicted = pair_logits(params, feats, prompts, keys) > 0
    own = feats.owner[prompts] == keys
    truth = labels > 0.5

    def rate(selection: torch.Tensor, want: bool) -> float | None:
        n = int(selection.sum())
        return None if n == 0 else round(float((predicted[selection] == want).float().mean()), 4)

    return {"records": len(records), "pairs": len(labels),
            "accuracy": round(float((predicted == truth).float().mean()), 4),
            "in_scope_recall": rate(truth, True), "neighbour_rejection": rate(own & ~truth, False),
            "other_rejection": rate(~own, False)}


# -- the routing threshold ------------------------------------------------------------

#: Thresholds ``calibrate`` chooses from.
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
#: The threshold of a classifier trained before calibration existed.
UNCALIBRATED = 0.5


@torch.no_grad()
def routing_probs(params: Mapping[str, torch.Tensor], feats: Features) -> torch.Tensor:
    """Scope probabilities [m, n] of every prompt against every key: the best logit over each
    prompt's real positions, as the memory scores a prompt's last position when it routes.
    Prompts go in chunks so the [chunk, t, n] logits stay small for large memories."""
    rows = []
    for start in range(0, feats.states.shape[0], 256):
        out = logits(params, feats.states[start:start + 256], feats.keys)       # [c, t, n]
        out = out.masked_fill(~feats.mask[start:start + 256, :, None], -float("inf"))
        rows.append(torch.sigmoid(out.max(dim=1).values))
    return torch.cat(rows) if rows else torch.zeros(0, feats.keys.shape[0])


def routing_rates(prob: torch.Tensor, owner: torch.Tensor, inside: torch.Tensor,
                  threshold: float) -> dict[str, float | None]:
    """At ``threshold``: the share of in-scope prompts routed to their own edit and of
    out-of-scope (neighbour) prompts routed to none. ``prob`` [m, n], ``owner``/``inside`` [m]."""
    best, which = prob.max(dim=1)
    routed = best >= threshold

    def share(selection: torch.Tensor) -> float | None:
        return round(float(selection.float().mean()), 4) if selection.numel() else None

    return {"in_scope_routed": share((routed & (which == owner))[inside]),
            "neighbours_kept": share((~routed)[~inside])}


def calibrate(params: Mapping[str, torch.Tensor], feats: Features, held: Sequence[int]) -> dict[str, Any]:
    """Choose the routing threshold on held-out records: their prompts against EVERY record's
    key (a memory as large as the training data, so neighbours meet many edits), the
    threshold in ``THRESHOLDS`` with the best mean of in-scope routing and neighbour
    rejection, ties to the lower. A classifier's probabilities are its own scale (one trained
    longer saturates higher), so the threshold belongs to the classifier, not to the method."""
    chosen_records = set(held)
    rows = [i for i in range(len(feats.owner)) if int(feats.owner[i]) in chosen_records]
    inside = feats.positive[rows]
    if not rows or bool(inside.all()) or not bool(inside.any()):
        return {"threshold": UNCALIBRATED, "note": "no held-out in-scope and neighbour prompts: not calibrated"}
    sub = Features(feats.keys, feats.states[rows], feats.mask[rows], feats.owner[rows], inside)
    prob = routing_probs(params, sub)
    table = {str(t): routing_rates(prob, sub.owner, inside, t) for t in THRESHOLDS}

    def balanced(t: float) -> float:
        r = table[str(t)]
        return round(((r["in_scope_routed"] or 0.0) + (r["neighbours_kept"] or 0.0)) / 2, 4)

    chosen = max(THRESHOLDS, key=lambda t: (balanced(t), -t))
    return {"threshold": chosen, "memory": int(feats.keys.shape[0]), "prompts": len(rows), "rates": table}


# -- training with checkpoints --------------------------------------------------------


@dataclass
class TrainState:
    """Head parameters, Adam moments and the next step."""

    params: dict[str, torch.Tensor]
    exp_avg: dict[str, torch.Tensor]
    exp_avg_sq: dict[str, torch.Tensor]
    step: int = 0


def fresh_state(d: int, settings: TrainSettings) -> TrainState:
    params = init_params(d, settings.rank, settings.seed)
    return TrainState(params, {k: torch.zeros_like(v) for k, v in params.items()},
                      {k: torch.zeros_like(v) for k, v in params.items()})


def train_steps(state: TrainState, feats: Features, records: Sequence[int], settings: TrainSettings,
                until: int, on_step: Callable[[TrainState, float], None] | None = None) -> TrainState:
    """Run Adam steps ``state.step``..``until``-1 in place; each step's batch is drawn from a
    generator seeded by (seed, step), so a resumed run takes exactly the same steps."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    while state.step < until:
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + state.step)
        prompts, keys, labels = _pairs(feats, records, settings.negatives, generator)
        pick = torch.randperm(len(labels), generator=generator)[:settings.batch_size]
        params = {k: v.detach().clone().requires_grad_(True) for k, v in state.params.items()}
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            pair_logits(params, feats, prompts[pick], keys[pick]), labels[pick])
        grads = torch.autograd.grad(loss, list(params.values()))
        t = state.step + 1
        with torch.no_grad():
            for (name, value), grad in zip(params.items(), grads):
                state.exp_avg[name].mul_(beta1).add_(grad, alpha=1 - beta1)
                state.exp_avg_sq[name].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                m_hat = state.exp_avg[name] / (1 - beta1 ** t)
                v_hat = state.exp_avg_sq[name] / (1 - beta2 ** t)
                state.params[name] = (value - settings.lr * m_hat / (v_hat.sqrt() + eps)).detach()
        state.step = t
        if on_step is not None:
            on_step(state, float(loss.detach()))
    return state


def save_checkpoint(folder: Path, state: TrainState, meta: Mapping[str, Any]) -> None:
    """Parameters, moments and step to ``checkpoint.safetensors`` (+ JSON), written atomically."""
    from safetensors.torch import save_file

    tensors = {f"param.{k}": v.contiguous() for k, v in state.params.items()}
    tensors |= {f"exp_avg.{k}": v.contiguous() for k, v in state.exp_avg.items()}
    tensors |= {f"exp_avg_sq.{k}": v.contiguous() for k, v in state.exp_avg_sq.items()}
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (CHECKPOINT + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT + "-checkpoint", "step": str(state.step)})
    tmp.replace(folder / CHECKPOINT)
    (folder / (CHECKPOINT_META + ".tmp")).write_text(json.dumps({**meta, "step": state.step}, sort_keys=True))
    (folder / (CHECKPOINT_META + ".tmp")).replace(folder / CHECKPOINT_META)


def load_checkpoint(folder: Path, meta: Mapping[str, Any]) -> TrainState | None:
    """The checkpoint in ``folder`` when its settings, data and model match ``meta``; else None."""
    from safetensors import safe_open

    path, info = folder / CHECKPOINT, folder / CHECKPOINT_META
    if not path.is_file() or not info.is_file():
        return None
    try:
        recorded = json.loads(info.read_text())
        if any(recorded.get(k) != v for k, v in meta.items()):
            return None
        out: dict[str, dict[str, torch.Tensor]] = {"param": {}, "exp_avg": {}, "exp_avg_sq": {}}
        with safe_open(str(path), framework="pt") as f:
            step = int(f.metadata()["step"])
            for name in f.keys():
                group, key = name.split(".", 1)
                out[group][key] = f.get_tensor(name)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # a torn or foreign checkpoint: start over
    return TrainState(out["param"], out["exp_avg"], out["exp_avg_sq"], step)


def content_hash(params: Mapping[str, torch.Tensor], settings: Mapping[str, Any], fingerprint: str,
                 threshold: float | None = None) -> str:
    """sha256 of the head's tensors (sorted by name, float32 bytes), the canonical settings JSON,
    the base model's fingerprint (the same head trained for two models is two classifiers) and
    the calibrated routing threshold (None for classifiers trained before calibration)."""
    digest = hashlib.sha256(b"kvc-serac-classifier/1\0")
    for name in sorted(params):
        digest.update(name.encode() + b"\0" + params[name].float().contiguous().numpy().tobytes())
    digest.update(json.dumps(dict(settings), sort_keys=True).encode() + b"\0" + fingerprint.encode())
    if threshold is not None:
        digest.update(f"\0threshold={float(threshold)!r}".encode())
    return digest.hexdigest()


def save_classifier(folder: Path, params: Mapping[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """Write the trained head and its JSON; returns its content hash."""
    from safetensors.torch import save_file

    digest = content_hash(params, meta["settings"], str(meta["fingerprint"]), meta.get("threshold"))
    meta = {**meta, "hash": digest, "format": FORMAT, "format_version": FORMAT_VERSION}
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in params.items()}, str(folder / CLASSIFIER),
              metadata={"format": FORMAT, "hash": digest})
    (folder / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return digest


# -- the cache ------------------------------------------------------------------------


def cache_dir() -> Path:
    from kedit_vc.models.cache import cache_root

    return cache_root() / "serac"


def fingerprint_slug(fingerprint: str) -> str:
    return fingerprint.replace("sha256:", "")[:24]


@dataclass(frozen=True)
class Classifier:
    """A trained scope classifier loaded from the cache."""

    params: Mapping[str, torch.Tensor]
    meta: Mapping[str, Any]

    @property
    def hash(self) -> str:
        return str(self.meta["hash"])

    @property
    def layer(self) -> int:
        return int(self.meta["settings"]["layer"])

    @property
    def threshold(self) -> float:
        """The routing threshold calibrated at training (``UNCALIBRATED`` for older classifiers)."""
        return float(self.meta.get("threshold", UNCALIBRATED))

    def scores(self, hidden: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return causal_scores(self.params, hidden, keys)


def read_classifier(folder: Path) -> Classifier:
    """Load and verify the classifier in ``folder`` (``ClassifierError`` if altered or unreadable)."""
    from safetensors.torch import load_file

    try:
        meta = json.loads((folder / META).read_text())
        params = load_file(str(folder / CLASSIFIER))
    except (OSError, ValueError, json.JSONDecodeError) as error:
        raise ClassifierError(f"{folder}: not a readable SERAC classifier ({error}); retrain it with "
                              f"`{TRAIN_COMMAND}`") from None
    if meta.get("format") != FORMAT or set(params) != {"proj", "scale", "bias"}:
        raise ClassifierError(f"{folder}: not a kvc SERAC classifier")
    if content_hash(params, meta["settings"], str(meta.get("fingerprint")), meta.get("threshold")) != meta.get("hash"):
        raise ClassifierError(f"{folder}: the classifier's contents do not match its recorded hash "
                              f"(altered?); retrain it with `{TRAIN_COMMAND}`")
    return Classifier(params, meta)


def _folders() -> Iterable[Path]:
    root = cache_dir()
    return sorted(root.glob(f"*/*/{META}")) if root.is_dir() else []


def default_rank(meta: Mapping[str, Any]) -> tuple[bool, int, float]:
    """How a cached classifier ranks when an edit names none: calibrated before uncalibrated,
    then the most training records, then the newest. (Newest alone once made a 40-record
    trial head the default over a 1,110-record calibrated one.)"""
    return calibrated(meta), training_records(meta), float(meta.get("finished", 0))


def training_records(meta: Mapping[str, Any]) -> int:
    """Records the head was trained on (all records for a head saved before the split was recorded)."""
    return int(meta.get("train_records", meta.get("records", 0)) or 0)


def calibrated(meta: Mapping[str, Any]) -> bool:
    """Whether training calibrated the threshold on held-out prompts (not the 0.5 fallback)."""
    calibration = meta.get("calibration")
    return "threshold" in meta and not (isinstance(calibration, Mapping) and "note" in calibration)


def describe(meta: Mapping[str, Any]) -> str:
    """One line naming a classifier: hash prefix, records, calibrated threshold."""
    threshold = meta.get("threshold")
    calibrated_as = f"calibrated threshold {threshold}" if calibrated(meta) else "uncalibrated"
    return f"{str(meta.get('hash', ''))[:12]} ({training_records(meta)} training records, {calibrated_as})"


def find_classifier(fingerprint: str, choice: str | None = None,
                    on_default: Callable[[str], None] | None = None) -> Classifier:
    """The classifier for the base model ``fingerprint``: ``choice`` is a folder or a hash
    prefix; None picks the best-ranked trained for this fingerprint (``default_rank``) and,
    when several are cached, calls ``on_default(line)`` with which one and how to name
    another. Refuses one trained for another model, and says which command trains one when
    there is none."""
    if choice and Path(choice).expanduser().is_dir():
        found = read_classifier(Path(choice).expanduser())
    else:
        candidates = []
        for meta_path in _folders():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if choice and not str(meta.get("hash", "")).startswith(choice):
                continue
            if not choice and meta.get("fingerprint") != fingerprint:
                continue
            candidates.append((default_rank(meta), meta_path.parent, meta))
        if not candidates:
            which = f"with hash {choice}" if choice else f"for this base model ({fingerprint})"
            raise ClassifierError(f"no SERAC scope classifier trained {which}; train one with "
                                  f"`{TRAIN_COMMAND}` (any format `kvc import` reads)")
        candidates.sort(key=lambda c: c[0])
        found = read_classifier(candidates[-1][1])
        if not choice and len(candidates) > 1 and on_default is not None:
            on_default(f"serac: using classifier {describe(candidates[-1][2])}, the best-ranked of "
                       f"{len(candidates)} cached for this model (calibrated first, then most records, then "
                       f"newest); name another with `method serac {{ classifier = \"HASH\" }}`")
    if found.meta.get("fingerprint") != fingerprint:
        raise ClassifierError(f"the SERAC classifier {found.hash[:12]} was trained for base model "
                              f"{found.meta.get('fingerprint')}, not this one ({fingerprint}); train one for "
                              f"this model with `{TRAIN_COMMAND}`")
    return found


def classifier_by_hash(digest: str) -> Classifier:
    """The cached classifier with content hash ``digest`` (what a commit records)."""
    for meta_path in _folders():
        try:
            if json.loads(meta_path.read_text()).get("hash") == digest:
                return read_classifier(meta_path.parent)
        except (OSError, json.JSONDecodeError):
            continue
    raise ClassifierError(f"the SERAC scope classifier {digest[:12]} this revision's edits were made with is not "
                          f"in the cache ({cache_dir()}); retrain it with the same data and settings: "
                          f"`{TRAIN_COMMAND}`")


def train(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest], fingerprint: str,
          settings: TrainSettings, data: Sequence[str], progress: bool = True,
          folder: Path | None = None) -> tuple[Classifier, Path, bool]:
    """Train (or resume, or reuse) the classifier for ``requests``; returns it, its folder and
    whether it came from the cache unchanged. ``data``: names of the data sources, hashed
    into the cache key together with the records' ids and prompts."""
    digest = hashlib.sha256(json.dumps([[r.edit_id, r.rewrite_prompt, [p.prompt for p in r.probes]]
                                        for r in requests]).encode()).hexdigest()[:16]
    key = settings.key(fingerprint, digest)
    folder = folder or cache_dir() / fingerprint_slug(fingerprint) / key
    if (folder / META).is_file():
        return read_classifier(folder), folder, True
    from kedit_vc.editors.common.progress import step_reporter

    began = time.perf_counter()
    with step_reporter("encoding records", len(requests), progress) as encoding:
        def encoded(index: int) -> None:
            if encoding is not None:
                encoding(index, float("nan"))

        feats = features(model, tokenizer, requests, settings.layer, encoded)
    train_idx, held_idx = split(requests, settings.holdout)
    check = {"settings": asdict(settings), "fingerprint": fingerprint, "data_digest": digest}
    state = load_checkpoint(folder, check) or fresh_state(feats.keys.shape[1], settings)
    resumed_from = state.step
    with step_reporter("training SERAC classifier", settings.steps, progress) as report:
        def on_step(current: TrainState, loss: float) -> None:
            if report is not None:
                report(current.step - 1, loss)
            if current.step % settings.checkpoint_every == 0 or current.step == settings.steps:
                save_checkpoint(folder, current, check)

        train_steps(state, feats, train_idx, settings, settings.steps, on_step)
    meta = {**check, "data": list(data), "records": len(requests), "train_records": len(train_idx),
            "heldout_records": len(held_idx), "heldout_ids": [requests[i].edit_id for i in held_idx][:200],
            "heldout": evaluate(state.params, feats, held_idx, settings.seed, settings.negatives),
            "train": evaluate(state.params, feats, train_idx, settings.seed, settings.negatives),
            "calibration": (calibration := calibrate(state.params, feats, held_idx)),
            "threshold": calibration["threshold"],
            "resumed_from_step": resumed_from, "seconds": round(time.perf_counter() - began, 1),
            "finished": time.time(), "d": int(feats.keys.shape[1]),
            "method": "embedding (dual-encoder) classifier over the frozen base model's block states"}
    save_classifier(folder, state.params, meta)
    return read_classifier(folder), folder, False
