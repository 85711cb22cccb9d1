"""A squash keeps what it squashes: the per-edit checks, refusal that leaves the store as
it was, --allow-loss recording what weakened, and --dry-run writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_kvc, write_spec
from kedit_vc.compiler.plan import EditRequest
from kedit_vc.eval.scores import EditScores, ProbeScore, ProbeScores
from kedit_vc.eval.report import summarize
from kedit_vc.ops.squash import KEPT, Loss, find_losses

EIFFEL = 'edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Rome"'
TOKYO = 'edit "Tokyo" prompt "{subject} is the capital of": "Japan" -> "China"'


def probe(kind: str, correct: bool, generated: str | None = None, target: str = "Rome") -> ProbeScore:
    return ProbeScore(kind, "p", target, 1.0, 1.0 if correct else 0.0, (5,), (5,) if correct else (6,),
                      generated=generated)


def test_checks_and_losses_per_edit():
    held = EditScores("e-1", (probe("rewrite", True, " Rome, Italy"), probe("paraphrase", True),
                              probe("neighbour", False)))
    (row,) = summarize(ProbeScores((held,))).rows
    assert {name: row.metrics[name] for name in KEPT} == {"reliability": 1.0, "gen_reliability": 1.0,
                                                         "generalization": 1.0}
    weak = EditScores("e-1", (probe("rewrite", True, " Paris"), probe("paraphrase", False), probe("neighbour", True)))
    never = EditScores("e-2", (probe("rewrite", False, " Paris"),))
    requests = [EditRequest("e-1", "Eiffel Tower", "{} is in", "Rome", "Paris"),
                EditRequest("e-2", "Tokyo", "{} is in", "China", "Japan")]
    before, after = summarize(ProbeScores((held, never))), summarize(ProbeScores((weak, never)))
    losses = find_losses(requests, before, after)
    # What never held (e-2) is no loss; e-1 keeps its teacher-forced rewrite but loses the rest.
    assert [(x.edit_id, x.check) for x in losses] == [("e-1", "gen_reliability"), ("e-1", "generalization")]
    assert find_losses(requests, before, before) == []


def _store_state(root: Path) -> dict[str, bytes]:
    """Every file of the store but the score cache (content-addressed scores of a commit's
    probes: measuring adds entries there, which change no history, ref or weights)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / ".kvc").rglob("*"))
            if p.is_file() and "cache/scores" not in p.as_posix()}


@pytest.fixture()
def squashable(project, tiny_model_dir):
    assert run_kvc("init", "--model", str(tiny_model_dir)).exit_code == 0
    for name, body in (("a.kedit", EIFFEL), ("b.kedit", TOKYO)):
        assert run_kvc("commit", str(write_spec(project, name, body)), "--no-progress").exit_code == 0
    return project


SQUASH = ("squash", "HEAD~2..HEAD", "--hparam", "layers=[1,2]", "--hparam", "v_steps=3", "--hparam",
          "stats_tokens=2000", "--hparam", "context_templates=2", "--no-progress")


def test_a_squash_that_would_lose_an_edit_is_refused_and_writes_nothing(squashable, monkeypatch):
    import importlib

    squash_op = importlib.import_module("kedit_vc.ops.squash")  # the module (kedit_vc.ops.squash is the function)

    # The re-solve is real; what it would lose is decided by the gate's detector, made to
    # report one loss (the detector itself is tested above).
    monkeypatch.setattr(squash_op, "find_losses",
                        lambda requests, before, after: [Loss(requests[0].edit_id, requests[0].subject,
                                                              requests[0].target_new, "reliability")])
    before = _store_state(squashable)
    refused = run_kvc(*SQUASH)
    assert refused.exit_code == 1, refused.output
    assert "would weaken 1 edit(s)" in refused.stderr and "Eiffel Tower" in refused.stdout
    assert _store_state(squashable) == before

    dry = run_kvc(*SQUASH, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)
    assert report["committed"] is None and report["dry_run"] and len(report["losses"]) == 1
    assert _store_state(squashable) == before

    accepted = run_kvc(*SQUASH, "--allow-loss")
    assert accepted.exit_code == 0, accepted.output
    shown = run_kvc("show", "HEAD")
    assert "weakened by this squash" in shown.stdout and "reliability" in shown.stdout
    from kedit_vc.store import open_store

    with open_store(squashable) as store:
        manifest = store.manifest("HEAD")
        assert manifest["op"] == "squash"
        assert [w["check"] for w in manifest["extra"]["weakened"]] == ["reliability"]
        assert store.fsck() == []


def test_a_squash_without_losses_commits_and_records_none(squashable):
    result = run_kvc(*SQUASH, "--json")
    report = json.loads(result.stdout)
    # On the tiny model nothing held before (three optimisation steps), so nothing can be lost.
    assert result.exit_code == 0 and report["committed"] and report["losses"] == []
