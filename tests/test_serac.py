"""SERAC on a tiny random Llama: the scope classifier's training resumes from a checkpoint to
the same state, `kvc train serac` caches per model and records the hash a commit keeps,
out-of-scope prompts give the base model's logits bit for bit, revert removes the edit from
the memory, a classifier trained for another model is refused, and editing with none trained
names the command that trains one."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_kvc, write_spec
from test_cli_store import EIFFEL, FRANCE, TOKYO

TRAIN_SPEC = "\n".join([EIFFEL, FRANCE, TOKYO, '''edit "Louvre" prompt "The {subject} is located in the city of": "Paris" -> "Berlin" {
    paraphrase "Tourists travel to see the {subject} in the city of"
    neighbour "Colosseum" => "Rome"
}'''])


def _requests(root):
    from kedit_vc.ops.train_serac import read_requests

    path = write_spec(root, "train.kedit", TRAIN_SPEC)
    return read_requests([str(path)])


def _settings(**kw):
    from kedit_vc.editors.serac.classifier import TrainSettings

    return TrainSettings(**{"layer": 1, "rank": 16, "steps": 8, "batch_size": 8, "checkpoint_every": 3,
                            "holdout": 0.0, **kw})


def test_training_resumed_from_a_checkpoint_reaches_the_same_state(store, tmp_path):
    from kedit_vc.editors.serac import classifier as c
    from kedit_vc.models import load_model

    lm = load_model(store.model_ref, progress=False)
    requests = _requests(store.paths.root)
    settings = _settings()
    straight, _, cached = c.train(lm.model, lm.tokenizer, requests, lm.fingerprint, settings, ["x"], progress=False,
                                  folder=tmp_path / "a")
    assert not cached and straight.meta["resumed_from_step"] == 0
    # an interrupted run: 5 steps and a checkpoint, then train() again
    feats = c.features(lm.model, lm.tokenizer, requests, settings.layer)
    state = c.train_steps(c.fresh_state(feats.keys.shape[1], settings), feats, c.split(requests, 0.0)[0],
                          settings, 5)
    digest = straight.meta["data_digest"]
    c.save_checkpoint(tmp_path / "b", state, {"settings": straight.meta["settings"], "fingerprint": lm.fingerprint,
                                              "data_digest": digest})
    resumed, _, _ = c.train(lm.model, lm.tokenizer, requests, lm.fingerprint, settings, ["x"], progress=False,
                            folder=tmp_path / "b")
    assert resumed.meta["resumed_from_step"] == 5
    for name in ("proj", "scale", "bias"):
        assert torch.equal(resumed.params[name], straight.params[name]), name
    assert resumed.hash == straight.hash
    assert not torch.equal(straight.params["proj"], c.init_params(64, 16, 0)["proj"])  # it did train
    # a checkpoint of other settings is not resumed from
    assert c.load_checkpoint(tmp_path / "b", {"settings": {**straight.meta["settings"], "lr": 9.0}}) is None


def test_editing_without_a_classifier_names_the_command(store):
    out = run_kvc("commit", str(write_spec(store.paths.root, "a.kedit", EIFFEL, method="method serac { }")))
    assert out.exit_code != 0 and "kvc train serac" in out.output and "Traceback" not in out.output, out.output


def _train_cli(store, *extra):
    path = write_spec(store.paths.root, "train.kedit", TRAIN_SPEC)
    return run_kvc("train", "serac", "--model", store.model_ref, "--data", str(path), "--layer", "1",
                   "--rank", "16", "--steps", "6", "--batch-size", "8", "--holdout", "0", "--no-progress", *extra)


def test_train_commit_revert_and_the_recorded_hash(store):
    from kedit_vc.ops import revert
    from kedit_vc.patches.memory.live import live_memory

    first = _train_cli(store)
    assert first.exit_code == 0 and "trained SERAC classifier" in first.output, first.output
    again = _train_cli(store)
    assert again.exit_code == 0 and "reused cached" in again.output, again.output
    digest = first.output.split("classifier ", 1)[1].split()[0]
    out = run_kvc("commit", str(write_spec(store.paths.root, "a.kedit", EIFFEL, method="method serac { }")))
    assert out.exit_code == 0, out.output
    out = run_kvc("commit", str(write_spec(store.paths.root, "b.kedit", TOKYO, method="method serac { }")))
    assert out.exit_code == 0, out.output
    memory = live_memory([p for p in store.live_patches("HEAD") if p.kind == "memory"])
    assert memory is not None and memory.policy == "serac" and str(memory.settings["classifier"]).startswith(digest)
    assert [f.subject for f in memory.facts] == ["Eiffel Tower", "Tokyo"]
    revert(store, "HEAD~1")
    memory = live_memory([p for p in store.live_patches("HEAD") if p.kind == "memory"])
    assert memory is not None and [f.subject for f in memory.facts] == ["Tokyo"]


def handmade_classifier(fingerprint: str, d: int = 64, name: str = "handmade", **meta: object) -> str:
    """A classifier that calls a prompt in scope when a state is within cosine 0.98 of an edit's key;
    by default it ranks above any trained here (``meta`` replaces that)."""
    from kedit_vc.editors.serac import classifier as c

    params = {"proj": torch.eye(d), "scale": torch.tensor([50.0]), "bias": torch.tensor([-49.0])}
    settings = json.loads(json.dumps(_settings().__dict__))
    settings["rank"] = d
    folder = c.cache_dir() / c.fingerprint_slug(fingerprint) / name
    meta = meta or {"finished": 1e12, "train_records": 10**9, "threshold": 0.5, "calibration": {"threshold": 0.5}}
    return c.save_classifier(folder, params, {"settings": settings, "fingerprint": fingerprint, **meta})


def test_out_of_scope_prompts_give_the_base_models_logits_bit_for_bit(store):
    from kedit_vc import load_edited
    from kedit_vc.models.prompting import encode_text
    from kedit_vc.patches.attach import side_patches

    base, tok = load_edited(store.paths.root)
    digest = handmade_classifier(store.fingerprint)
    out = run_kvc("commit", str(write_spec(store.paths.root, "a.kedit", EIFFEL, method="method serac { }")))
    assert out.exit_code == 0, out.output
    assert store.live_patches("HEAD")[0].settings["classifier"] == digest
    model, tok = load_edited(store.paths.root)
    wrapper = side_patches(model)
    others = ["Seoul is the capital of Korea", "The capital of Germany is Berlin", "Apple was founded by Steve Jobs"]
    own = torch.tensor([encode_text(tok, "The Eiffel Tower is located in the city of")])
    with torch.no_grad():
        edited = [model(input_ids=torch.tensor([encode_text(tok, p)])).logits for p in others]
        edited_own = model(input_ids=own).logits
        wrapper.clear()
        plain = [model(input_ids=torch.tensor([encode_text(tok, p)])).logits for p in others]
        plain_own = model(input_ids=own).logits
    for p, a, b in zip(others, edited, plain):
        assert torch.equal(a, b), p
    assert not torch.allclose(edited_own[0, -1], plain_own[0, -1])  # in scope: the counterfactual model answers


def test_a_classifier_of_another_model_is_refused(store):
    from kedit_vc.editors.serac.classifier import ClassifierError, find_classifier

    digest = handmade_classifier("sha256:" + "0" * 32)
    with pytest.raises(ClassifierError, match="trained for base model"):
        find_classifier("sha256:" + "1" * 32, digest[:12])
    out = run_kvc("commit", str(write_spec(store.paths.root, "a.kedit", EIFFEL,
                                           method=f'method serac {{ classifier = "{digest[:12]}" }}')))
    assert out.exit_code != 0 and "trained for base model" in out.output and "Traceback" not in out.output, out.output


def _synthetic_features(inside_cos: float, neighbour_cos: float):
    """Two records with unit keys e0, e1; each has one in-scope prompt at cosine ``inside_cos``
    to its own key and one neighbour at ``neighbour_cos`` (both orthogonal to the other key)."""
    from kedit_vc.editors.serac.classifier import Features

    keys = torch.eye(4)[:2]
    states, owner, positive = [], [], []
    for record in range(2):
        for cos, inside in ((inside_cos, True), (neighbour_cos, False)):
            state = torch.zeros(4)
            state[record], state[2 + record] = cos, (1 - cos ** 2) ** 0.5
            states.append(torch.stack([torch.zeros(4), state]))   # position 0 is masked out
            owner.append(record)
            positive.append(inside)
    mask = torch.tensor([[False, True]] * 4)
    return Features(keys, torch.stack(states), mask, torch.tensor(owner), torch.tensor(positive))


def test_calibration_picks_the_lowest_threshold_that_routes_scope_and_keeps_neighbours():
    from kedit_vc.editors.serac import classifier as c

    params = {"proj": torch.eye(4), "scale": torch.tensor([10.0]), "bias": torch.tensor([-8.0])}
    # p = sigmoid(10 cos - 8): in scope 0.88 (cos 1), neighbours 0.62 (cos 0.85)
    found = c.calibrate(params, _synthetic_features(1.0, 0.85), [0, 1])
    assert found["threshold"] == 0.7  # 0.7, 0.8 and 0.85 separate both; ties go to the lower
    assert found["rates"]["0.6"] == {"in_scope_routed": 1.0, "neighbours_kept": 0.0}
    assert found["rates"]["0.9"] == {"in_scope_routed": 0.0, "neighbours_kept": 1.0}
    # neighbours closer than the edits themselves: nothing separates them, the lowest wins
    assert c.calibrate(params, _synthetic_features(0.85, 1.0), [0, 1])["threshold"] == 0.5
    assert c.calibrate(params, _synthetic_features(1.0, 0.85), [])["threshold"] == c.UNCALIBRATED


def test_the_calibrated_threshold_is_the_default_and_part_of_the_hash(store, tmp_path):
    from kedit_vc.editors.serac import classifier as c
    from kedit_vc.editors.serac.hparams import SeracHparams

    out = _train_cli(store, "--holdout", "0.5")
    assert out.exit_code == 0 and "routing threshold" in out.output, out.output
    folder = next(c.cache_dir().glob(f"{c.fingerprint_slug(store.fingerprint)}/*/{c.META}")).parent
    trained = c.read_classifier(folder)
    assert trained.threshold == trained.meta["calibration"]["threshold"]
    out = run_kvc("commit", str(write_spec(store.paths.root, "a.kedit", EIFFEL, method="method serac { }")))
    assert out.exit_code == 0, out.output
    assert store.live_patches("HEAD")[0].settings["threshold"] == trained.threshold
    meta = json.loads((folder / c.META).read_text())
    meta["threshold"] = 0.95 if trained.threshold != 0.95 else 0.5
    (folder / c.META).write_text(json.dumps(meta))
    with pytest.raises(c.ClassifierError, match="altered"):
        c.read_classifier(folder)
    assert SeracHparams().threshold is None


def test_with_none_named_a_calibrated_classifier_on_more_records_beats_a_newer_trial(store, monkeypatch, tmp_path):
    """Newest alone once made a 40-record uncalibrated head the default: rank before age."""
    from kedit_vc.editors.serac import classifier as c

    def cached(name: str, **meta: object) -> str:
        return handmade_classifier(store.fingerprint, 8, name, **meta)

    monkeypatch.setenv("KVC_CACHE", str(tmp_path))                          # none of other tests' heads
    lines: list[str] = []
    good = cached("good", finished=1.0, train_records=1000, threshold=0.85)
    cached("trial", finished=2.0, train_records=40)                        # newer, uncalibrated
    cached("fallback", finished=2.5, train_records=5000, threshold=0.5,
           calibration={"threshold": 0.5, "note": "no held-out prompts"})  # more records, 0.5 fallback
    assert c.find_classifier(store.fingerprint, on_default=lines.append).hash == good
    cached("small", finished=3.0, train_records=40, threshold=0.8)         # newer, calibrated, fewer
    assert c.find_classifier(store.fingerprint, on_default=lines.append).hash == good
    assert len(lines) == 2 and good[:12] in lines[-1] and "of 4 cached" in lines[-1], lines
    bigger = cached("bigger", finished=0.5, train_records=2000, threshold=0.9)  # older, more records
    assert c.find_classifier(store.fingerprint).hash == bigger
    named: list[str] = []
    assert c.find_classifier(store.fingerprint, good[:12], on_default=named.append).hash == good
    assert named == []                                                     # named: nothing to say
