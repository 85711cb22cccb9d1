"""Metric functions, aggregation and fluency against hand-computed values (no model)."""

from __future__ import annotations

import json
import math

import pytest

from kedit_vc.errors import UsageError
from kedit_vc.eval import EvalReport, ProbeScores, summarize
from kedit_vc.eval.fluency import ngram_entropy, ngram_entropy_bits, text_ngram_entropy, word_tokens
from kedit_vc.eval.registry import METRICS, Metric, check_metric_name, register_metric
from kedit_vc.eval.scores import EditScores, ProbeScore


def ps(kind, nll, foil_nll=None, ids=(1, 2), argmax=(1, 2), group=None, prompt=None, target="t"):
    hits = sum(a == b for a, b in zip(ids, argmax))
    return ProbeScore(kind=kind, prompt=prompt or f"{kind} prompt", target=target, target_nll=nll,
                      target_acc=hits / len(ids), target_ids=tuple(ids), argmax_ids=tuple(argmax),
                      foil=None if foil_nll is None else "f", foil_nll=foil_nll, group=group)


POST = ProbeScores((
    EditScores("e1", (
        ps("rewrite", 1.0, 2.0),                               # new beats old
        ps("paraphrase", 3.0, 2.0, argmax=(1, 9)),             # old beats new; acc 0.5
        ps("paraphrase", 1.0, 1.5),                            # new beats old
        ps("neighbour", 0.5, 1.0, prompt="n1", argmax=(1, 7)),  # true still beats new
        ps("neighbour", 2.0, 1.0, prompt="n2"),                # new took over
    )),
    EditScores("e2", (
        ps("rewrite", 2.0, 1.0, argmax=(9, 9)),                # edit failed; acc 0
        ps("multihop", 1.0, group="g1", argmax=(1, 9)),
        ps("multihop", 1.0, group="g1"),                       # g1: one exact answer
        ps("multihop", 1.0, group="g2", argmax=(9, 2)),        # g2: none
        ps("hop", 1.0, ids=(5,), argmax=(5,)),
    )),
))
PRE = ProbeScores((
    EditScores("e1", tuple(ps(p.kind, 1.0, 1.0, prompt=p.prompt, argmax=(1, 7) if p.prompt == "n2" else (1, 2))
                           for p in POST.edits[0].probes)),
    EditScores("e2", POST.edits[1].probes),
))


def test_counterfact_scores_and_magnitudes():
    report = summarize(POST, PRE)
    m = report.metrics
    assert m["reliability_cf"] == pytest.approx(0.5)             # e1: 1, e2: 0
    assert m["generalization_cf"] == pytest.approx(0.5)          # e1 only: (0 + 1) / 2
    assert m["locality_cf"] == pytest.approx(0.5)
    e1_mag = math.exp(-1) - math.exp(-2)
    e2_mag = math.exp(-2) - math.exp(-1)
    assert m["reliability_cf_magnitude"] == pytest.approx((e1_mag + e2_mag) / 2)
    loc_mag = ((math.exp(-0.5) - math.exp(-1)) + (math.exp(-2) - math.exp(-1))) / 2
    assert m["locality_cf_magnitude"] == pytest.approx(loc_mag)
    assert m["cf_score"] == pytest.approx(0.5)                   # hmean(0.5, 0.5, 0.5)


def test_counterfact_names_are_headlines_a_spec_can_expect():
    m = summarize(POST, PRE).metrics
    assert (m["efficacy"], m["paraphrase"], m["neighbourhood"]) == (
        m["reliability_cf"], m["generalization_cf"], m["locality_cf"])
    assert check_metric_name("neighbourhood") == "neighbourhood"


def test_token_accuracy_agreement_and_multihop():
    report = summarize(POST, PRE)
    m = report.metrics
    assert m["reliability_acc"] == pytest.approx(0.5)            # e1: 1.0, e2: 0.0
    assert m["generalization_acc"] == pytest.approx(0.75)
    assert m["locality_acc"] == pytest.approx(0.75)              # n1 0.5, n2 1.0
    # n1: post (1,7) vs pre (1,2) -> 0.5; n2: post (1,2) vs pre (1,7) -> 0.5
    assert m["locality_agree"] == pytest.approx(0.5)
    assert m["portability_multihop"] == pytest.approx(0.5)       # g1 yes, g2 no (pooled over groups)
    assert report.counts["portability_multihop"] == 2
    assert m["portability_acc"] == pytest.approx((0.5 + 1 + 0.5 + 1) / 4)
    for headline, definition in (("reliability", "reliability_acc"), ("locality", "locality_agree")):
        assert m[headline] == m[definition]


def test_locality_agreement_is_one_when_nothing_changed_and_zero_when_everything_did():
    """Asymmetric cases: the half-and-half neighbours above score 0.5 whether agreements or
    disagreements are counted (bench/mutants.py's "locality counts disagreements")."""
    def scores(argmax):
        return ProbeScores((EditScores("e", (ps("rewrite", 1.0), ps("neighbour", 1.0, prompt="n", argmax=argmax))),))

    base = scores((4, 5))
    assert summarize(scores((4, 5)), base).metrics["locality_agree"] == 1.0
    assert summarize(scores((6, 7)), base).metrics["locality_agree"] == 0.0
    assert summarize(scores((4, 7)), base).metrics["locality"] == 0.5


def test_pre_values_and_rows():
    report = summarize(POST, PRE, extra={"seconds": 1.5}, pre_extra={"fluency": 5.0})
    assert report.pre_metrics["reliability_cf"] == 0.0          # equal NLLs: target does not beat foil
    assert "locality_agree" not in report.pre_metrics
    assert report.metrics["seconds"] == 1.5 and report.pre_metrics["fluency"] == 5.0
    assert [r.edit_id for r in report.rows] == ["e1", "e2"]
    assert report.rows[1].metrics["reliability_cf"] == 0.0
    assert "generalization_cf" not in report.rows[1].metrics


def test_without_pre_agreement_is_absent():
    report = summarize(POST)
    assert "locality_agree" not in report.metrics and "locality" not in report.metrics
    assert report.pre_metrics == {}


def test_misaligned_pre_scores_are_an_error():
    shifted = ProbeScores((EditScores("e1", tuple(ps(p.kind, 1.0, prompt="other") for p in POST.edits[0].probes)),))
    with pytest.raises(ValueError, match="do not line up"):
        summarize(POST, shifted)


def test_report_json_round_trip_with_sorted_keys():
    report = summarize(POST, PRE)
    text = report.dumps()
    assert EvalReport.loads(text) == report
    data = json.loads(text)
    assert list(data["metrics"]) == sorted(data["metrics"])
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert "reliability_cf" in report.table()


def test_registry_rejects_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        register_metric(Metric("reliability_cf", "reliability", "dup", METRICS["reliability_cf"].samples))
    with pytest.raises(UsageError, match="unknown metric 'reliabilty'"):
        check_metric_name("reliabilty")
    assert check_metric_name("fluency") == "fluency"


def test_every_metric_name_the_package_lists_is_registered():
    """The spec language, the CLI's flags and tables, the gate's default, benchmark summaries
    and auto's weights all read their names from the registry: none may name an unknown metric."""
    from kedit_vc.cli.options import THRESHOLD_METRICS
    from kedit_vc.editors.auto.choose import DEFAULT_WEIGHTS
    from kedit_vc.eval.bench import REFERENCE
    from kedit_vc.eval.registry import known_metric_names
    from kedit_vc.lang.metrics import METRICS as SPEC_METRICS
    from kedit_vc.ops.commit import DEFAULT_GATE
    from kedit_vc.ops.plot import CURVES

    listed = {*THRESHOLD_METRICS, *DEFAULT_WEIGHTS, *SPEC_METRICS, *DEFAULT_GATE, *CURVES,
              *(name for names in REFERENCE.values() for name in names)}
    assert sorted(listed - set(known_metric_names())) == []
    assert set(SPEC_METRICS) >= {"reliability", "efficacy", "gen_locality", "raw_gen_portability", "perplexity"}


def test_word_tokens_split_punctuation_and_contractions():
    assert word_tokens("Don't stop, it's 3.5 km.") == ["Do", "n't", "stop", ",", "it", "'s", "3.5", "km", "."]


def test_ngram_entropy_on_fixed_strings():
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))   # bigrams ab, ba, ab
    assert ngram_entropy_bits(["a", "b", "a", "b"], 2) == pytest.approx(h2)
    assert text_ngram_entropy("a b a b") == pytest.approx((2 / 3 * h2 + 4 / 3 * 1.0) / 2)
    assert text_ngram_entropy("the cat sat") == pytest.approx((2 / 3 * 1.0 + 4 / 3 * 0.0) / 2)
    assert text_ngram_entropy("go go go go go") == 0.0             # one bigram, one trigram
    assert ngram_entropy(["a b a b", "the cat sat"]) == pytest.approx(
        (text_ngram_entropy("a b a b") + 1 / 3) / 2)
    # eight distinct words: 7 distinct bigrams, 6 distinct trigrams
    assert text_ngram_entropy("one two three four five six seven eight") == pytest.approx(
        (2 / 3 * math.log2(7) + 4 / 3 * math.log2(6)) / 2)
