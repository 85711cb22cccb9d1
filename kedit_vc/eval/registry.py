"""The metrics registry: one place to add a metric.

A probe metric turns one edit's probe scores (post-edit, and pre-edit where the metric
compares with the unedited model) into samples; its per-edit value is their mean, and
its aggregate the mean of per-edit values (as ROME's summary averages per case) or, for
``pool=True``, the mean over all samples (MQuAKE counts cases, i.e. groups).

Two definitions from the field are kept apart by name suffix:
- ``_cf``: CounterFact probability comparison, 1 where the target's mean per-token NLL
  beats the foil's (``_cf_magnitude``: mean of ``exp(-nll_target) - exp(-nll_foil)``);
- ``_acc``: EasyEdit teacher-forced token accuracy of the target;
- ``_agree``: token agreement of post-edit argmax with pre-edit argmax (locality).
The bare family names (``reliability``...) are the headline definitions the gate and
spec ``expect`` lines use by default; ``HEADLINES`` says which definition each one is.

Generative metrics (``gen_`` prefix) judge what the model says: the bounded greedy
continuation of each probe's prompt (``ProbeScore.generated``) counts when it contains the
probe's expected answer, normalised (``kedit_vc.eval.answers``): the new object for rewrite,
paraphrase and portability probes, the unchanged answer for locality probes. Raw-prompt
twins (``raw_`` prefix) compute a metric on the probes scored without the shared prefix
token (``ProbeScore.raw``), as a user prompts an exported model. Both are skipped (absent
from a report, never 0) when the scores hold no generations or no raw prompts.

Model-level metrics (fluency, perplexity, efficiency) are measured on the model, not
from probes; they enter a report through ``summarize(extra=...)`` under the names in
``MODEL_METRICS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from kedit_vc.errors import UsageError
from kedit_vc.eval.answers import contains_answer, normalise
from kedit_vc.eval.scores import EditScores, ProbeScore

Samples = Callable[[EditScores, "EditScores | None"], list[float]]


@dataclass(frozen=True)
class Metric:
    """A probe metric: ``samples(post, pre)`` -> values in [0, 1] (or signed for magnitudes)."""

    name: str
    family: str
    doc: str
    samples: Samples
    pool: bool = False
    needs_pre: bool = False


@dataclass(frozen=True)
class Derived:
    """An aggregate computed from other aggregates (e.g. the CounterFact harmonic-mean score)."""

    name: str
    inputs: tuple[str, ...]
    doc: str
    combine: Callable[[Sequence[float]], float]


METRICS: dict[str, Metric] = {}
DERIVED: dict[str, Derived] = {}

#: Measured on the model and passed to ``summarize(extra=...)``.
MODEL_METRICS: Mapping[str, str] = {
    "fluency": "n-gram entropy of generations: mean of (2/3 H2, 4/3 H3) in bits, ROME reference",
    "perplexity": "perplexity of a fixed text (lower is better)",
    "seconds": "wall time of the edit",
    "peak_rss_bytes": "peak resident memory of the process",
    "peak_gpu_bytes": "peak GPU memory allocated (CUDA only)",
    "delta_bytes": "size of the delta's tensors",
}

FAMILY_KINDS: Mapping[str, tuple[str, ...]] = {
    "reliability": ("rewrite",),
    "generalization": ("paraphrase",),
    "locality": ("neighbour", "keep", "attribute"),
    "portability": ("alias", "hop", "reverse", "multihop"),
}

#: Headline name -> the registered definition it stands for.
HEADLINES: Mapping[str, str] = {
    "reliability": "reliability_acc",
    "generalization": "generalization_acc",
    "locality": "locality_agree",
    "portability": "portability_acc",
}

#: CounterFact's own names (a spec may write ``expect neighbourhood >= 0.9``).
CF_HEADLINES: Mapping[str, str] = {
    "efficacy": "reliability_cf",
    "paraphrase": "generalization_cf",
    "neighbourhood": "locality_cf",
}

#: CounterFact's score: the harmonic mean of the three ``CF_HEADLINES`` definitions.
CF_SCORE = "cf_score"

#: Prefix of a metric's twin computed on raw prompts (no prefix token).
RAW = "raw_"


def raw(names: Iterable[str]) -> tuple[str, ...]:
    """The raw-prompt twins of ``names``, in order."""
    return tuple(RAW + name for name in names)


def register_metric(metric: Metric) -> None:
    """Add a probe metric under a unique name."""
    if metric.name in METRICS or metric.name in DERIVED:
        raise ValueError(f"metric {metric.name!r} is already registered")
    METRICS[metric.name] = metric


def register_derived(derived: Derived) -> None:
    """Add an aggregate-level metric under a unique name."""
    if derived.name in METRICS or derived.name in DERIVED:
        raise ValueError(f"metric {derived.name!r} is already registered")
    DERIVED[derived.name] = derived


def known_metric_names() -> list[str]:
    """Every name a report can carry (probe, derived and model-level metrics)."""
    return sorted({*METRICS, *DERIVED, *MODEL_METRICS})


def check_metric_name(name: str) -> str:
    """``name`` if known, else a UsageError listing the known names."""
    if name not in known_metric_names():
        raise UsageError(f"unknown metric {name!r}; known metrics: {', '.join(known_metric_names())}")
    return name


# --- sample functions -------------------------------------------------------------------


def _of(scores: EditScores, kinds: Sequence[str]) -> list[ProbeScore]:
    return [p for p in scores.probes if p.kind in kinds]


def cf_success(kinds: Sequence[str]) -> Samples:
    """1.0 where the target's mean NLL is below the foil's (probes without a foil skipped)."""
    return lambda post, pre: [float(p.target_nll < p.foil_nll) for p in _of(post, kinds) if p.foil_nll is not None]


def cf_magnitude(kinds: Sequence[str]) -> Samples:
    """``exp(-nll_target) - exp(-nll_foil)``: ROME's "diff" (geometric-mean token probabilities)."""
    return lambda post, pre: [
        math.exp(-p.target_nll) - math.exp(-p.foil_nll) for p in _of(post, kinds) if p.foil_nll is not None
    ]


def token_acc(kinds: Sequence[str]) -> Samples:
    """EasyEdit teacher-forced token accuracy of each probe's target."""
    return lambda post, pre: [p.target_acc for p in _of(post, kinds)]


def agreement(kinds: Sequence[str]) -> Samples:
    """Share of teacher-forced positions where post-edit argmax equals pre-edit argmax."""

    def samples(post: EditScores, pre: EditScores | None) -> list[float]:
        if pre is None:
            return []
        ours, theirs = _of(post, kinds), _of(pre, kinds)
        if len(ours) != len(theirs):
            raise ValueError(f"pre- and post-edit probes of {post.edit_id} do not line up: "
                             f"{len(theirs)} vs {len(ours)} locality probes")
        out = []
        for a, b in zip(ours, theirs):
            if (a.prompt, a.target) != (b.prompt, b.target):
                raise ValueError(f"pre- and post-edit probes of {post.edit_id} do not line up: {a.prompt!r}")
            out.append(sum(x == y for x, y in zip(a.argmax_ids, b.argmax_ids)) / len(a.argmax_ids))
        return out

    return samples


def any_correct_per_group(kinds: Sequence[str]) -> Samples:
    """MQuAKE multi-hop: per group, 1.0 if any of its probes is answered exactly (teacher-forced)."""

    def samples(post: EditScores, pre: EditScores | None) -> list[float]:
        groups: dict[str, bool] = {}
        for i, p in enumerate(_of(post, kinds)):
            key = p.group if p.group is not None else f"#{i}"
            groups[key] = groups.get(key, False) or p.correct
        return [float(v) for v in groups.values()]

    return samples


def generated_contains(kinds: Sequence[str]) -> Samples:
    """1.0 where the greedy continuation contains the probe's expected answer (probes not generated skipped)."""
    return lambda post, pre: [float(contains_answer(p.generated, p.target))
                              for p in _of(post, kinds) if p.generated is not None]


def generated_unchanged(kinds: Sequence[str]) -> Samples:
    """1.0 where the post-edit greedy continuation equals the pre-edit one (normalised)."""

    def samples(post: EditScores, pre: EditScores | None) -> list[float]:
        if pre is None:
            return []
        ours, theirs = _of(post, kinds), _of(pre, kinds)
        if len(ours) != len(theirs):
            raise ValueError(f"pre- and post-edit probes of {post.edit_id} do not line up")
        return [float(normalise(a.generated) == normalise(b.generated))
                for a, b in zip(ours, theirs) if a.generated is not None and b.generated is not None]

    return samples


def generated_any_per_group(kinds: Sequence[str]) -> Samples:
    """MQuAKE multi-hop, generative: per group, 1.0 if any question's continuation contains its answer."""

    def samples(post: EditScores, pre: EditScores | None) -> list[float]:
        groups: dict[str, bool] = {}
        for i, p in enumerate(_of(post, kinds)):
            if p.generated is None:
                continue
            key = p.group if p.group is not None else f"#{i}"
            groups[key] = groups.get(key, False) or contains_answer(p.generated, p.target)
        return [float(v) for v in groups.values()]

    return samples


def on_raw_prompts(samples: Samples) -> Samples:
    """``samples`` computed on the raw-prompt scores (nothing where raw prompts were not scored)."""

    def raw_samples(post: EditScores, pre: EditScores | None) -> list[float]:
        raw_post = post.raw_view()
        if raw_post is None:
            return []
        return samples(raw_post, None if pre is None else pre.raw_view())

    return raw_samples


#: Generative metric -> family (its probe kinds are the family's).
GENERATIVE: Mapping[str, str] = {
    "gen_reliability": "reliability",
    "gen_generalization": "generalization",
    "gen_locality": "locality",
    "gen_portability": "portability",
}

#: Metrics that get a ``raw_`` twin computed on raw prompts.
RAW_TWINNED: tuple[str, ...] = (
    *HEADLINES, *CF_HEADLINES.values(), "portability_multihop", *GENERATIVE, "gen_portability_multihop",
)


def _hmean(values: Sequence[float]) -> float:
    return 0.0 if min(values) <= 0 else len(values) / sum(1.0 / v for v in values)


def _register_builtins() -> None:
    for family in ("reliability", "generalization", "locality"):
        cf_kinds = ("neighbour", "keep") if family == "locality" else FAMILY_KINDS[family]
        register_metric(Metric(f"{family}_cf", family, "CounterFact score: target beats foil by mean NLL",
                               cf_success(cf_kinds)))
        register_metric(Metric(f"{family}_cf_magnitude", family, "CounterFact magnitude: p(target) - p(foil)",
                               cf_magnitude(cf_kinds)))
    for family, kinds in FAMILY_KINDS.items():
        register_metric(Metric(f"{family}_acc", family, "EasyEdit teacher-forced token accuracy", token_acc(kinds)))
    register_metric(Metric("locality_agree", "locality", "argmax agreement with the pre-edit model",
                           agreement(FAMILY_KINDS["locality"]), needs_pre=True))
    register_metric(Metric("portability_multihop", "portability", "MQuAKE: any question of a group answered",
                           any_correct_per_group(("multihop",)), pool=True))
    for headline, definition in {**HEADLINES, **CF_HEADLINES}.items():
        base = METRICS[definition]
        register_metric(Metric(headline, base.family, f"headline: {definition}", base.samples, base.pool,
                               base.needs_pre))
    register_derived(Derived(CF_SCORE, tuple(CF_HEADLINES.values()),
                             "CounterFact Score: harmonic mean of efficacy, paraphrase and neighbourhood scores",
                             _hmean))


def _register_generative_and_raw() -> None:
    for name, family in GENERATIVE.items():
        register_metric(Metric(name, family, "greedy continuation contains the expected answer (normalised)",
                               generated_contains(FAMILY_KINDS[family])))
    register_metric(Metric("gen_locality_agree", "locality", "greedy continuation unchanged from the pre-edit model",
                           generated_unchanged(FAMILY_KINDS["locality"]), needs_pre=True))
    register_metric(Metric("gen_portability_multihop", "portability",
                           "MQuAKE, generative: any question of a group answered in its continuation",
                           generated_any_per_group(("multihop",)), pool=True))
    for name in RAW_TWINNED:
        base = METRICS[name]
        register_metric(Metric(RAW + name, base.family, f"{name} on raw prompts (no prefix token)",
                               on_raw_prompts(base.samples), base.pool, base.needs_pre))
    register_derived(Derived(RAW + CF_SCORE, raw(CF_HEADLINES.values()), f"{CF_SCORE} on raw prompts", _hmean))


_register_builtins()
_register_generative_and_raw()
