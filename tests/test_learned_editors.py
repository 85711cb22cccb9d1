"""MEND and KE on the tiny model: the update is the paper's formula, training resumes to
the same state, trained editors are bound to their base model, and the CLI records them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from conftest import run_kvc, save_tiny_llama
from hypothesis import given, settings
from hypothesis import strategies as st

SUBJECTS = ["Paris", "Rome", "Berlin", "Madrid", "London", "Tokyo", "Seoul", "Microsoft", "Apple", "Amazon"]
OBJECTS = ["France", "Italy", "Germany", "Spain", "Japan", "China", "Korea"]


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 EasyEdit-format facts in the tiny tokenizer's words (paraphrase and neighbour each)."""
    rng = random.Random(0)
    rows = []
    templates = ["{} is located in the country of", "{} is a city in", "the capital {} is in"]
    for i in range(30):  # every (subject, prompt) once: the importer skips contradicting records
        s, new, old = SUBJECTS[i % 10], rng.choice(OBJECTS), rng.choice(OBJECTS)
        rows.append({"case_id": i, "prompt": templates[i // 10].format(s), "subject": s, "target_new": new,
                     "ground_truth": old, "rephrase_prompt": f"the city {s} is in",
                     "locality_prompt": f"{rng.choice(SUBJECTS)} is a city in",
                     "locality_ground_truth": rng.choice(OBJECTS)})
    path = tmp_path_factory.mktemp("learned-data") / "facts.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):  # noqa: ANN201
    from kedit_vc.models import load_model

    return load_model(str(tiny_model_dir), progress=False)


def _settings(**kw: object):  # noqa: ANN202
    from kedit_vc.editors.common.metatrain import TrainSettings

    base = {"steps": 6, "edits_per_step": 2, "lr": 1e-3, "lr_lr": 1e-3, "checkpoint_every": 2}
    return TrainSettings(**{**base, **kw})  # type: ignore[arg-type]


def _train(method: str, tiny, records: Path, out: Path, **kw: object):  # noqa: ANN001, ANN202
    from kedit_vc.ops.train_editor import train_editor

    stop_after = kw.pop("stop_after", None)
    hparams = kw.pop("hparams", {"rank": 8} if method == "mend" else {})
    return train_editor(method, str(tiny.path), [str(records)], hparams, _settings(**kw), held_out=5, out=str(out),
                        progress=False, loaded=tiny, stop_after=stop_after)


def _request():  # noqa: ANN202
    from kedit_vc.compiler.plan import EditRequest

    return EditRequest("e1", "Paris", "{} is located in the country of", "Japan", "France")


def _edit(method: str, tiny, editor: Path | None, **hparams: object):  # noqa: ANN001, ANN202
    from kedit_vc.editors.base import get_editor
    from kedit_vc.editors.registry import build_hparams

    values = {"rank": 8} if method == "mend" else {}
    values.update(hparams)
    if editor is not None:
        values["editor"] = str(editor)
    return get_editor(method).edit(tiny.model, tiny.tokenizer, [_request()], build_hparams(method, values),
                                   _context(tiny))


def _context(tiny):  # noqa: ANN001, ANN202
    from kedit_vc.editors.base import EditContext

    return EditContext(fingerprint=tiny.fingerprint, progress=False)


def _true_gradients(tiny, layers):  # noqa: ANN001, ANN202
    """∂loss/∂W of each edited down-projection by plain autograd on the weights."""
    from kedit_vc.editors.common.metatrain import request_batch
    from kedit_vc.models.families import family_of, get_module
    from kedit_vc.models.forward import final_hidden, logits_from_hidden

    family = family_of(tiny.model)
    weights = [get_module(tiny.model, family.mlp_out_path(layer)).weight for layer in layers]
    batch = request_batch(tiny.tokenizer, [_request()])
    for w in weights:
        w.requires_grad_(True)
    try:
        hidden = final_hidden(tiny.model, batch.input_ids, batch.mask)
        logits = logits_from_hidden(tiny.model, hidden[batch.rows, batch.cols])
        nll = -torch.log_softmax(logits, -1).gather(-1, batch.ids[:, None])[:, 0]
        grads = torch.autograd.grad((nll * batch.weights).sum(), weights)
    finally:
        for w in weights:
            w.requires_grad_(False)
    return dict(zip(layers, grads)), batch


def test_gradient_factors_are_the_weight_gradient(tiny) -> None:  # noqa: ANN001
    from kedit_vc.editors.common.learned import gradient_factors

    layers = (1, 2, 3)
    true, batch = _true_gradients(tiny, layers)
    factors, _ = gradient_factors(tiny.model, layers, batch)
    for layer in layers:
        assert factors.u[layer].shape[0] >= 1
        torch.testing.assert_close(factors.gradient(layer), true[layer], rtol=1e-4, atol=1e-6)
    assert factors.u[3].shape[0] == 1  # last block: only the target position reaches the loss


def test_mend_update_is_the_papers_formula_on_the_network_outputs(tiny, records, tmp_path) -> None:  # noqa: ANN001
    from kedit_vc.editors.common.learned import gradient_factors
    from kedit_vc.editors.common.metatrain import request_batch
    from kedit_vc.editors.mend.algorithm import load_network
    from kedit_vc.editors.mend.hparams import MendHparams

    outcome = _train("mend", tiny, records, tmp_path / "mend")
    result = _edit("mend", tiny, outcome.folder)
    network, trained = load_network(tiny.model, MendHparams(rank=8, editor=str(outcome.folder)), tiny.fingerprint)
    assert result.info["trained_editor"] == trained.hash == outcome.editor_hash
    factors, _ = gradient_factors(tiny.model, network.layers, request_batch(tiny.tokenizer, [_request()]))
    pseudo = network.pseudo_factors(factors)
    names = sorted(result.delta.updates)
    for index, layer in enumerate(network.layers):
        u_tilde, d_tilde = pseudo[layer]
        # trained: the network is no longer the identity map it starts as
        assert not torch.allclose(u_tilde, network.transform_of(layer).normalise(factors.u[layer],
                                                                                 factors.delta[layer])[0])
        expected = -network.edit_lrs[index] * sum(torch.outer(d_tilde[t], u_tilde[t]) for t in range(len(u_tilde)))
        update = result.delta.updates[names[index]]
        assert update.kind == "lowrank" and update.rank == len(u_tilde)  # rank <= the edit's tokens
        torch.testing.assert_close(update.dense(), expected.detach(), rtol=1e-4, atol=1e-7)


def test_ke_update_is_the_papers_formula(tiny, records, tmp_path) -> None:  # noqa: ANN001
    from kedit_vc.editors.common.metatrain import condition_ids
    from kedit_vc.editors.ke.algorithm import load_network
    from kedit_vc.editors.ke.hparams import KeHparams

    outcome = _train("ke", tiny, records, tmp_path / "ke")
    result = _edit("ke", tiny, outcome.folder)
    network, _ = load_network(tiny.model, KeHparams(editor=str(outcome.folder)), tiny.fingerprint)
    true, _ = _true_gradients(tiny, network.layers)
    ids = torch.tensor(condition_ids(tiny.tokenizer, _request()))
    with torch.no_grad():
        outputs = network.conditioned(network.encode(ids))
    names = sorted(result.delta.updates)
    for index, layer in enumerate(network.layers):
        a_c, a_r, b_c, b_r, eta = outputs[layer]
        a = torch.outer(a_r.softmax(-1), a_c)
        b = torch.outer(b_r.softmax(-1), b_c)
        expected = -network.max_scale * torch.sigmoid(eta) * (true[layer] * a + b)
        torch.testing.assert_close(result.delta.updates[names[index]].dense(), expected, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("method", ["mend", "ke"])
def test_training_resumed_after_a_kill_reaches_the_uninterrupted_state(method, tiny, records, tmp_path) -> None:  # noqa: ANN001
    from safetensors.torch import load_file

    whole = _train(method, tiny, records, tmp_path / "whole")
    killed = _train(method, tiny, records, tmp_path / "killed", stop_after=3)  # checkpoint at 2, step 3 lost
    assert killed.editor_hash == "" and not (tmp_path / "killed" / "editor.json").exists()
    assert json.loads((tmp_path / "killed" / "checkpoint.json").read_text())["step"] == 2
    resumed = _train(method, tiny, records, tmp_path / "killed")
    assert resumed.record["training"]["resumed_from_step"] == 2
    a = load_file(str(whole.folder / "editor.safetensors"))
    b = load_file(str(resumed.folder / "editor.safetensors"))
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # the same run again is the cached editor, not a new training
    again = _train(method, tiny, records, tmp_path / "whole")
    assert again.reused and again.editor_hash == whole.editor_hash
    # a finished shorter run asked for more steps continues to the same state
    _train(method, tiny, records, tmp_path / "short", steps=4)
    longer = _train(method, tiny, records, tmp_path / "short")
    assert longer.record["training"]["resumed_from_step"] == 4
    c = load_file(str(longer.folder / "editor.safetensors"))
    assert all(torch.equal(a[name], c[name]) for name in a)


def test_held_out_facts_are_never_trained_on(tiny, records, tmp_path) -> None:  # noqa: ANN001
    outcome = _train("mend", tiny, records, tmp_path / "mend", steps=1)
    training = outcome.record["training"]
    held = set(training["held_out"][0]["edit_ids"])
    assert len(held) == 5 and not held & set(training["train_edit_ids"])
    assert training["train_facts"] == len(training["train_edit_ids"]) > 0


def test_an_editor_trained_for_another_base_model_is_refused(tiny, records, tmp_path) -> None:  # noqa: ANN001
    from kedit_vc.editors.common.learned import EditorMismatch
    from kedit_vc.models import load_model

    outcome = _train("mend", tiny, records, tmp_path / "mend", steps=1)
    other = load_model(str(save_tiny_llama(tmp_path / "other", seed=7)), progress=False)
    assert other.fingerprint != tiny.fingerprint
    with pytest.raises(EditorMismatch, match="trained for base model .* not this one .*kvc train mend"):
        _edit("mend", other, outcome.folder)
    with pytest.raises(EditorMismatch, match="settings"):
        _edit("mend", tiny, outcome.folder, rank=4)


@pytest.mark.parametrize("method", ["mend", "ke"])
def test_editing_without_a_trained_editor_names_the_train_command(method, tiny) -> None:  # noqa: ANN001
    from kedit_vc.editors.common.learned import NoTrainedEditor

    with pytest.raises(NoTrainedEditor, match=f"no trained {method} editor .*kvc train {method} --model"):
        _edit(method, tiny, None, layers=[0, 3])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=5), st.integers(0, 1000))
def test_mend_normalisation_statistics_do_not_depend_on_how_tokens_are_batched(chunks: list[int], seed: int) -> None:
    from kedit_vc.editors.mend.network import GradientTransform

    generator = torch.Generator().manual_seed(seed)
    total = sum(chunks)
    u, d = torch.randn(total, 5, generator=generator) * 3 + 1, torch.randn(total, 4, generator=generator)
    transform = GradientTransform(5, 4, rank=2, n_hidden=1, modes=1)
    start = 0
    for size in chunks:
        transform.observe(u[start:start + size], d[start:start + size])
        start += size
    assert float(transform.count) == total
    torch.testing.assert_close(transform.u_mean, u.double().mean(0))
    if total > 1:
        torch.testing.assert_close(transform.u_m2 / (total - 1), u.double().var(0))
        torch.testing.assert_close(transform.d_m2 / (total - 1), d.double().var(0))


def test_cli_trains_once_per_base_model_and_commits_record_the_editor(project, tiny_model_dir, records) -> None:  # noqa: ANN001
    args = ("train", "mend", "--model", str(tiny_model_dir), "--data", f"easyedit:{records}", "--held-out", "5",
            "--steps", "3", "--edits-per-step", "1", "--hparam", "rank=8", "--no-progress", "--json")
    first = run_kvc(*args)
    assert first.exit_code == 0, first.output
    trained = json.loads(first.stdout)
    assert not trained["reused"] and trained["train_facts"] == 25
    assert "/editors/mend/" in trained["editor"]
    # a second store of the same base model finds the cached editor: no retraining
    assert json.loads(run_kvc(*args).stdout)["reused"] is True
    assert run_kvc("init", "--model", str(tiny_model_dir)).exit_code == 0
    spec = project / "a.kedit"
    spec.write_text('method mend { rank = 8 }\nedit "Paris" prompt "{subject} is located in the country of" '
                    '-> "Japan"\n', encoding="utf-8")
    committed = run_kvc("commit", str(spec), "--no-progress")
    assert committed.exit_code == 0, committed.output
    short = trained["editor_hash"][:16]
    assert f"trained editor mend {short}" in run_kvc("show", "HEAD").stdout
    assert f"editor: mend {short}" in run_kvc("log", "-n", "1").stdout
    assert json.loads(run_kvc("log", "--json").stdout)[0]["trained_editors"] == [f"mend {short}"]


def test_cli_commit_without_a_trained_editor_fails_with_the_train_command(project, tiny_model_dir) -> None:  # noqa: ANN001
    assert run_kvc("init", "--model", str(tiny_model_dir)).exit_code == 0
    spec = project / "a.kedit"
    spec.write_text('method ke { hidden = 7 }\nedit "Paris" prompt "{subject} is located in the country of" '
                    '-> "Japan"\n', encoding="utf-8")
    failed = run_kvc("commit", str(spec), "--no-progress")
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    assert "no trained ke editor" in failed.stderr and "kvc train ke --model" in failed.stderr
