"""A store refuses a model that is not its base: a real second model, not a forged field.

The store remembers its base model as a folder and a fingerprint. Here the folder is
then filled with another model (the same Llama shape with other weights, or a Qwen2 of
other sizes), as happens when a user re-downloads or overwrites a checkpoint. Every
command that loads the base (commit, eval, export, explain) must stop with one line that
names the store's model and both fingerprints, exit 1, and write nothing.
"""

from __future__ import annotations

import shutil

import pytest

from conftest import run_kvc, save_tiny_llama, save_tiny_qwen2, write_spec
from test_cli_store import EIFFEL, FRANCE, ok, one_line_error

OTHER_MODELS = {"llama-other-weights": lambda folder: save_tiny_llama(folder, seed=1),
                "qwen2": lambda folder: save_tiny_qwen2(folder, seed=1)}


@pytest.fixture(scope="module", params=sorted(OTHER_MODELS))
def other_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(folder, fingerprint) of a model that is not the tiny Llama."""
    from kedit_vc.models import load_model

    folder = OTHER_MODELS[request.param](tmp_path_factory.mktemp(request.param))
    return folder, load_model(str(folder)).fingerprint


def test_every_command_that_loads_the_base_refuses_another_model(project, tiny_model_dir, other_model):
    from kedit_vc.store import open_store

    base = project.parent / "base-model"
    shutil.copytree(tiny_model_dir, base)
    ok(run_kvc("init", "--model", str(base)))
    ok(run_kvc("commit", str(write_spec(project, "a.kedit", EIFFEL)), "--no-progress"))
    with open_store(project) as store:
        head, made_for = store.head(), store.fingerprint
    other_folder, other_fingerprint = other_model
    assert other_fingerprint != made_for
    shutil.rmtree(base)
    shutil.copytree(other_folder, base)  # the store's model folder now holds another model

    names = (f"this store was made for model {str(base)!r} (fingerprint {made_for[:16]})",
             f"the loaded model has fingerprint {other_fingerprint[:16]}")
    spec = write_spec(project, "b.kedit", FRANCE)
    out = project / "exported"
    for args in (("commit", str(spec), "--no-progress"), ("eval", "--no-progress"), ("eval", "HEAD", "--json"),
                 ("export", "-o", str(out)), ("explain", "HEAD")):
        one_line_error(run_kvc(*args), 1, *names)
    with open_store(project) as store:
        assert store.head() == head  # the refused commit wrote nothing
    assert not out.exists() or not any(out.iterdir())
