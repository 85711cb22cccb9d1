"""Running on users' hardware: --device/--dtype/--device-map on every model-loading command,
half-precision deltas, device-map dispatch, and streamed corpus statistics (tiny models, CPU).

GPU tests are marked ``gpu`` and skip only when torch.cuda is unavailable.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kedit_vc.cli.options import MODEL_COMMANDS
from kedit_vc.errors import UsageError
from kedit_vc.models import placement
from tests.conftest import run_kvc

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_model_command_takes_the_placement_flags(command: str) -> None:
    result = run_kvc(*command.split(), "--device", "cpu", "--dtype", "bfloat16", "--device-map", "none", "--help")
    assert result.exit_code == 0, result.output
    assert "--device" in result.output and "--dtype" in result.output


@pytest.mark.parametrize("command", MODEL_COMMANDS)
@pytest.mark.parametrize(("flag", "value"), [("--device", "gpu"), ("--dtype", "int8"), ("--device-map", "half")])
def test_an_unknown_device_or_dtype_is_refused_naming_the_flag(command: str, flag: str, value: str) -> None:
    result = run_kvc(*command.split(), flag, value)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and flag in lines[0] and repr(value) in lines[0], result.output


def test_parsing_and_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert placement.parse_device("CUDA:1") == "cuda:1"
    assert placement.parse_dtype("bf16") == "bfloat16"
    with pytest.raises(UsageError, match="--device"):
        placement.parse_device("cuda:x")
    monkeypatch.setenv("KVC_DTYPE", "float16")
    assert placement.requested().dtype == "float16"
    with placement.using(placement.Placement(dtype="bfloat16")):
        assert placement.requested().dtype == "bfloat16"          # a flag beats the environment
        assert placement.requested(placement.Placement(dtype="float32")).dtype == "float32"  # an argument beats both
    assert placement.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            placement.resolve_device("cuda")


def test_load_model_places_the_model_and_keeps_the_float32_fingerprint(tiny_model_dir: Path) -> None:
    from kedit_vc.models import load_model

    full = load_model(str(tiny_model_dir), progress=False)
    half = load_model(str(tiny_model_dir), progress=False, dtype="bfloat16", device="cpu")
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    assert half.fingerprint == full.fingerprint   # a store opens whatever the dtype


def test_a_float16_edit_applies_to_float32_weights(project: Path, tiny_model_dir: Path) -> None:
    """Commit made with a float16 model; its stored delta applied to the float32 base gives the
    float16 run's weights within float16 rounding (the delta itself is solved in float64)."""
    from kedit_vc.ops.load import load_edited
    from tests.conftest import write_spec

    assert run_kvc("init", "--model", str(tiny_model_dir)).exit_code == 0
    spec = write_spec(project, "a.kedit", 'edit "France" prompt "The capital of {subject} is": "Paris" -> "Madrid"')
    result = run_kvc("commit", str(spec), "--dtype", "float16", "--device", "cpu")
    assert result.exit_code == 0, result.output
    model32, _ = load_edited(project, dtype="float32")
    model16, _ = load_edited(project, dtype="float16")
    base, _ = load_edited(project, "HEAD~1")
    changed = 0
    for (name, p32), p16, p0 in zip(model32.named_parameters(), model16.parameters(), base.parameters()):
        assert p32.dtype == torch.float32 and p16.dtype == torch.float16
        delta = (p32 - p0).abs().max().item()
        if delta > 0:
            changed += 1
            # float16 keeps 11 significant bits: the two agree to its rounding of the weight.
            tolerance = 2e-3 * p0.abs().max().item() + 1e-6
            assert (p32 - p16.float()).abs().max().item() <= tolerance, name
    assert changed >= 1


def test_device_map_dispatch_gives_the_same_delta(project: Path, tiny_model_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A model dispatched through accelerate (hooks on every layer) edits like the plain one."""
    from kedit_vc.store import open_store

    spec_body = 'edit "France" prompt "The capital of {subject} is": "Paris" -> "Madrid"'
    from tests.conftest import write_spec

    deltas = []
    for mapped in (None, "sequential"):
        folder = project / (mapped or "plain")
        folder.mkdir()
        monkeypatch.chdir(folder)
        assert run_kvc("init", "--model", str(tiny_model_dir)).exit_code == 0
        spec = write_spec(folder, "a.kedit", spec_body)
        args = ["commit", str(spec)] + (["--device-map", mapped] if mapped else [])
        result = run_kvc(*args)
        assert result.exit_code == 0, result.output
        with open_store(folder) as store:
            deltas.append(store.live_sum("HEAD"))
    (a, b) = deltas
    assert set(a.updates) == set(b.updates)
    from kedit_vc.delta import materialize

    ma, mb = materialize([a]), materialize([b])
    for name in ma:
        torch.testing.assert_close(ma[name], mb[name], rtol=1e-4, atol=1e-6)


def test_corpus_statistics_stream_within_the_budget_and_hit_the_cache(tmp_path: Path,
                                                                      tiny_model_dir: Path) -> None:
    from kedit_vc.models import load_model
    from kedit_vc.stats.corpus import corpus_id, text_batches
    from kedit_vc.stats.covariance import key_second_moments

    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.txt").write_text("\n".join(f"line {i} {j} of some text about Paris." for j in range(400)))
    loaded = load_model(str(tiny_model_dir), progress=False)
    chunks = list(text_batches(loaded.tokenizer, str(folder), 500))
    assert sum(c.shape[1] for c in chunks) < 500 + 128   # stops within one chunk of the budget
    before = corpus_id(str(folder), 0)
    stats = tmp_path / "stats"
    first = key_second_moments(loaded.model, loaded.tokenizer, loaded.fingerprint, [1], 500, str(folder),
                               stats_dir=stats, progress=False)
    files = list(stats.rglob("*.safetensors"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = key_second_moments(loaded.model, loaded.tokenizer, loaded.fingerprint, [1], 500, str(folder),
                               stats_dir=stats, progress=False)
    assert files[0].stat().st_mtime_ns == stamp   # a cache hit: nothing recomputed
    torch.testing.assert_close(first[1], again[1])
    assert files[0].parent.name == before
    (folder / "0.txt").write_text("changed")
    assert corpus_id(str(folder), 0) != before   # another corpus: another cache entry


@pytest.mark.gpu
@gpu
def test_cuda_load_and_edit_match_cpu(project: Path, tiny_model_dir: Path) -> None:
    from kedit_vc.models import load_model

    cpu = load_model(str(tiny_model_dir), progress=False, device="cpu")
    cuda = load_model(str(tiny_model_dir), progress=False, device="cuda")
    ids = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(cpu.model(input_ids=ids).logits, cuda.model(input_ids=ids).logits.cpu(),
                               rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_gpu_check_refuses_cleanly_without_a_gpu(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import importlib
    import sys

    bench = Path(__file__).resolve().parents[1] / "bench"
    monkeypatch.syspath_prepend(str(bench))
    module = importlib.import_module("gpu_check")
    assert module.main([]) == 2
    assert capsys.readouterr().err.startswith("no GPU")
    sys.modules.pop("gpu_check", None)
