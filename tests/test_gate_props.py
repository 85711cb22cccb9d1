"""Properties of the metrics and the gates (issue 23 item 5, hypothesis).

- Every metric a report holds is a share in [0, 1] (``*_cf_magnitude``: a difference of two
  probabilities, in [-1, 1]), whatever the probe scores: post, pre, per-edit rows.
- The squash gate (``ops.squash.find_losses``) is monotone and exact: weakening one more
  check after the squash adds exactly that check to the losses if it held before, and
  never removes one; so a refusal can never become an acceptance.
- The CI gate (``eval.gate.check``): lowering a measured value, raising a ``>=``/``>``
  threshold or adding a threshold never turns a failing gate into a passing one.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.eval.gate import Threshold, check
from kedit_vc.eval.registry import METRICS
from kedit_vc.eval.report import EditRow, EvalReport, summarize
from kedit_vc.eval.scores import EditScores, ProbeScore, ProbeScores
from kedit_vc.ops.squash import KEPT, KEPT_RAW, find_losses

KINDS = ("rewrite", "paraphrase", "neighbour", "keep", "attribute", "alias", "hop", "reverse", "multihop")
WORDS = ("Rome", "Paris", "the", "city", "of", "Italy", "")
SETTINGS = settings(max_examples=60, deadline=None)

_ids = st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple)
_nll = st.floats(0.0, 30.0, allow_nan=False)
_text = st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join)


@st.composite
def _probe(draw, kind: str, target: str, prompt: str, ids: tuple[int, ...], group: str | None,
           with_foil: bool, generated: bool) -> ProbeScore:
    """One probe's scores; the shape (kind, prompt, target ids, foil, group) is shared by pre and post."""
    argmax = tuple(draw(st.integers(0, 4)) for _ in ids)
    acc = sum(a == b for a, b in zip(argmax, ids)) / len(ids)
    return ProbeScore(kind, prompt, target, draw(_nll), acc, ids, argmax,
                      foil="Paris" if with_foil else None, foil_nll=draw(_nll) if with_foil else None,
                      group=group, generated=draw(_text) if generated else None)


@st.composite
def scored_pair(draw) -> tuple[ProbeScores, ProbeScores]:
    """Post- and pre-edit scores of the same edits (aligned probes), with or without raw prompts."""
    forms = draw(st.sampled_from(["prefixed", "both"]))
    generated = draw(st.booleans())
    posts, pres = [], []
    for e in range(draw(st.integers(1, 4))):
        # CounterFact's three kinds with foils (so cf_score is computed), then any probes at all.
        shapes = [(kind, draw(_ids), None, True, "Rome") for kind in ("rewrite", "paraphrase", "neighbour")
                  if draw(st.integers(0, 4))]
        shapes += draw(st.lists(st.tuples(st.sampled_from(KINDS), _ids, st.sampled_from(["g1", "g2", None]),
                                          st.booleans(), st.sampled_from(WORDS[:-1])), min_size=1, max_size=5))
        post, pre = [], []
        for i, (kind, ids, group, with_foil, target) in enumerate(shapes):
            prompt = f"p{i}"
            pair = []
            for _ in range(2):
                probe = draw(_probe(kind, target, prompt, ids, group, with_foil, generated))
                if forms == "both":
                    raw = draw(_probe(kind, target, prompt, ids, group, with_foil, generated))
                    probe = ProbeScore(**{**probe.__dict__, "raw": raw})
                pair.append(probe)
            post.append(pair[0])
            pre.append(pair[1])
        posts.append(EditScores(f"e-{e}", tuple(post)))
        pres.append(EditScores(f"e-{e}", tuple(pre)))
    return ProbeScores(tuple(posts), forms), ProbeScores(tuple(pres), forms)


def _in_range(name: str, value: float) -> bool:
    low = -1.0 if name.endswith("_magnitude") else 0.0
    return math.isfinite(value) and low <= value <= 1.0


@SETTINGS
@given(scored_pair())
def test_every_metric_is_a_share_in_the_unit_interval(pair):
    post, pre = pair
    for report in (summarize(post, pre), summarize(post)):
        assert report.metrics, "no metric computed"
        for values in (report.metrics, report.pre_metrics, *(row.metrics for row in report.rows)):
            bad = {name: v for name, v in values.items() if not _in_range(name, v)}
            assert not bad, bad
    with_pre = summarize(post, pre).metrics
    assert "locality_agree" in with_pre or not any(p.kind in ("neighbour", "keep", "attribute")
                                                  for e in post.edits for p in e.probes)


CHECKS = KEPT + KEPT_RAW
_value = st.sampled_from([0.0, 0.5, 1.0])


@st.composite
def before_after(draw) -> tuple[list[EditRequest], EvalReport, EvalReport]:
    """Per-edit rows of the squash gate's checks before and after (a check may be absent)."""
    n = draw(st.integers(1, 4))
    requests = [EditRequest(f"e-{i}", f"S{i}", "{} is in", "Rome", "Paris") for i in range(n)]

    def rows() -> tuple[EditRow, ...]:
        return tuple(EditRow(r.edit_id, {c: draw(_value) for c in CHECKS if draw(st.booleans()) or c in KEPT})
                     for r in requests)

    return requests, EvalReport({}, rows=rows()), EvalReport({}, rows=rows())


def _keys(losses) -> set[tuple[str, str]]:
    return {(loss.edit_id, loss.check) for loss in losses}


@SETTINGS
@given(before_after(), st.data())
def test_weakening_one_more_check_adds_exactly_that_loss(case, data):
    requests, before, after = case
    edit = data.draw(st.sampled_from([r.edit_id for r in requests]))
    name = data.draw(st.sampled_from(CHECKS))
    row = next(r for r in after.rows if r.edit_id == edit)
    lower = data.draw(st.sampled_from([v for v in (0.0, 0.5) if v < row.metrics.get(name, 1.0)] or [0.0]))
    weaker = EvalReport({}, rows=tuple(EditRow(r.edit_id, {**r.metrics, name: lower}) if r.edit_id == edit else r
                                       for r in after.rows))
    old, new = _keys(find_losses(requests, before, after)), _keys(find_losses(requests, before, weaker))
    held = next(r for r in before.rows if r.edit_id == edit).metrics.get(name) == 1.0
    assert new == old | ({(edit, name)} if held else set())
    if old:
        assert new  # a refusal stays a refusal


_metric = st.sampled_from(sorted(METRICS))


@st.composite
def gate_case(draw) -> tuple[dict[str, float], list[Threshold]]:
    names = draw(st.lists(_metric, min_size=1, max_size=5, unique=True))
    values = {n: draw(st.floats(0.0, 1.0)) for n in names if draw(st.booleans()) or n == names[0]}
    thresholds = [Threshold(draw(st.sampled_from(names)), draw(st.sampled_from([">=", ">"])),
                            draw(st.floats(0.0, 1.0)), "flag") for _ in range(draw(st.integers(1, 4)))]
    return values, thresholds


@SETTINGS
@given(gate_case(), st.data())
def test_a_worse_report_or_a_stricter_gate_never_turns_a_failure_into_a_pass(case, data):
    values, thresholds = case
    result = check(EvalReport(values), thresholds)
    failed = {id(r.threshold) for r in result.failed}

    name = data.draw(st.sampled_from(sorted(values)))
    worse = {**values, name: data.draw(st.floats(0.0, values[name]))}
    after_worse = check(EvalReport(worse), thresholds)
    assert failed <= {id(r.threshold) for r in after_worse.failed}

    i = data.draw(st.integers(0, len(thresholds) - 1))
    t = thresholds[i]
    stricter = [*thresholds[:i], Threshold(t.metric, t.op, data.draw(st.floats(t.threshold, 1.0)), t.source),
                *thresholds[i + 1:]]
    named = sorted({t.metric for t in thresholds} | set(values))
    extra = Threshold(data.draw(st.sampled_from(named) | _metric), ">=", data.draw(st.floats(0.0, 1.0)), "flag")
    for gate in (stricter, [*thresholds, extra]):
        if result.exit_code == 1:
            assert check(EvalReport(values), gate).exit_code == 1
