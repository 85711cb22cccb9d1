"""A method is one folder: a throwaway method written into a temporary folder is found by
``kvc compile``, the spec checker, ``--method`` validation, ops and the editor contract
test, with no edit anywhere else."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_kvc
from test_editors import check_editor_contract, contract_methods
from tiny_models import FAMILY_KINDS, tiny_tokenizer

import kedit_vc.editors as editors_package
from kedit_vc.compiler.plan import EditorCall, EditRequest, Plan
from kedit_vc.editors import registry
from kedit_vc.errors import UsageError
from kedit_vc.lang import SpecError, load_text
from kedit_vc.ops.plans import override

#: The whole method: these three files in ``editors/throwaway/`` and nothing else.
FILES = {
    "__init__.py": '''
        """throwaway: a test method (registration only)."""
        from kedit_vc.editors.registry import MethodSpec, register_method

        from .hparams import ThrowawayHparams, check


        def _editor():
            from .algorithm import ThrowawayEditor

            return ThrowawayEditor()


        register_method(MethodSpec(name="throwaway", hparams_class=ThrowawayHparams, factory=_editor,
                                   check=check, summary="adds zero to one MLP projection (a test)"))
    ''',
    "hparams.py": '''
        from dataclasses import dataclass

        from kedit_vc.editors.common.hparams import hparam


        @dataclass(frozen=True)
        class ThrowawayHparams:
            layer: int = hparam(1, "block whose MLP down-projection gets the update")
            scale: float = hparam(0.0, "the update's value (0: nothing changes)")


        def check(hp):
            return [f"scale must be >= 0, not {hp.scale}"] if hp.scale < 0 else []
    ''',
    "algorithm.py": '''
        import torch

        from kedit_vc.delta import Delta, Dense
        from kedit_vc.editors.base import EditResult
        from kedit_vc.models.families import family_of


        class ThrowawayEditor:
            name = "throwaway"

            def edit(self, model, tokenizer, requests, hparams, context):
                name = family_of(model).mlp_out_weight_name(hparams.layer)
                weight = dict(model.named_parameters())[name]
                value = torch.full_like(weight.detach(), hparams.scale)
                return EditResult(delta=Delta(updates={name: Dense(value=value)}),
                                  info={"layer": hparams.layer})
    ''',
}
EDIT = 'edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Rome"'


@pytest.fixture()
def throwaway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``kedit_vc.editors.throwaway`` in a temporary folder on the package's path; the
    registry and ``sys.modules`` are restored afterwards."""
    registry.method_names()  # the built-in methods, before the registry is copied
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    folder = tmp_path / "methods"
    (folder / "throwaway").mkdir(parents=True)
    for name, text in FILES.items():
        (folder / "throwaway" / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    monkeypatch.setattr(editors_package, "__path__", [*editors_package.__path__, str(folder)])
    yield folder
    for module in [m for m in sys.modules if m.startswith("kedit_vc.editors.throwaway")]:
        del sys.modules[module]
    vars(editors_package).pop("throwaway", None)


def test_the_folder_alone_registers_the_method(throwaway: Path) -> None:
    assert "throwaway" in registry.method_names()
    spec = registry.method_spec("throwaway")
    assert spec.hparams_class.__module__ == "kedit_vc.editors.throwaway.hparams"
    assert "torch" not in spec.factory.__module__  # the algorithm loads only when an editor is made
    assert registry.hparam_names("throwaway") == ["layer", "scale"]


def test_kvc_compile_plans_the_new_method(throwaway: Path, tmp_path: Path) -> None:
    spec = tmp_path / "facts.kedit"
    spec.write_text(f"method throwaway {{ layer = 2 }}\n{EDIT}\n", encoding="utf-8")
    result = run_kvc("compile", str(spec), "--json")
    assert result.exit_code == 0, result.output
    assert '"method": "throwaway"' in result.stdout and '"layer": 2' in result.stdout


def test_spec_checker_reads_the_new_schema_with_locations(throwaway: Path) -> None:
    with pytest.raises(SpecError) as raised:
        load_text(f"method throwaway {{ layr = 1 }}\n{EDIT}\n", "facts.kedit")
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.message == "unknown hyperparameter 'layr' for throwaway (did you mean 'layer'?)"
    assert (diagnostic.span.line, diagnostic.span.column) == (1, 20)
    with pytest.raises(SpecError) as raised:  # the method's own check
        load_text(f"method throwaway {{ scale = -1.0 }}\n{EDIT}\n", "facts.kedit")
    assert raised.value.messages == ["throwaway: scale must be >= 0, not -1.0"]
    # auto takes it as a candidate, and checks its nested hyperparameters through its schema
    load_text(f'method auto {{ candidates = ["rome", "throwaway"] }}\n{EDIT}\n', "facts.kedit")
    with pytest.raises(SpecError) as raised:
        load_text(f"method auto {{ hparams = {{ throwaway = {{ scal = 1 }} }} }}\n{EDIT}\n", "facts.kedit")
    assert raised.value.messages == ["unknown hyperparameter 'scal' for throwaway (did you mean 'scale'?)"]


def test_method_options_and_ops_validate_through_the_registry(throwaway: Path, tmp_path: Path) -> None:
    spec = tmp_path / "facts.kedit"
    spec.write_text(f"{EDIT}\n", encoding="utf-8")
    typo = run_kvc("commit", str(spec), "--method", "throwawy")
    assert typo.exit_code == 2
    assert "unknown editing method 'throwawy' (did you mean 'throwaway'?)" in typo.stderr
    assert "throwaway" in run_kvc("commit", "--help").stdout  # --method's help lists it
    accepted = run_kvc("commit", str(spec), "--method", "throwaway")  # fails later: no store here
    assert "unknown editing method" not in accepted.output
    plan = Plan((EditorCall("rome", {}, (EditRequest("e-1", "S", "{} is in", "x"),)),))
    (call,) = override(plan, "throwaway", {"layer": 0}).calls
    assert call.method == "throwaway" and call.hparams == {"layer": 0}
    with pytest.raises(UsageError, match="scale must be >= 0"):
        override(plan, "throwaway", {"scale": -2})


def test_the_editor_contract_test_runs_the_new_method(throwaway: Path, tmp_path: Path) -> None:
    assert "throwaway" in contract_methods()  # the list tests/test_editors.py parametrises over
    tok = tiny_tokenizer()
    for kind in FAMILY_KINDS:
        result, changed = check_editor_contract("throwaway", kind, tok, str(tmp_path))
        assert result.info == {"layer": 1} and not changed  # a zero update changes nothing


def test_entry_points_add_methods_of_installed_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    registry.method_names()
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    spec = registry.MethodSpec("plugged", registry.method_spec("ft").hparams_class,
                               registry.method_spec("ft").factory, "an installed method")

    class Point:
        def load(self) -> registry.MethodSpec:
            return spec

    seen = []
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: seen.append(group) or [Point()])
    registry._entry_points.__wrapped__()
    assert seen == [registry.ENTRY_POINT_GROUP] and registry.method_spec("plugged") is spec


def test_names_are_unique_lowercase_and_every_field_has_help() -> None:
    rome, ft = registry.method_spec("rome"), registry.method_spec("ft")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_method(registry.MethodSpec("rome", ft.hparams_class, ft.factory, "x"))
    with pytest.raises(ValueError, match="frozen dataclass"):
        registry.register_method(registry.MethodSpec("other", object, rome.factory, "x"))
    with pytest.raises(ValueError, match="lowercase"):
        registry.register_method(registry.MethodSpec("Rome", rome.hparams_class, rome.factory, "x"))
    import dataclasses

    for name in registry.method_names():
        for field in dataclasses.fields(registry.method_spec(name).hparams_class):
            assert field.metadata["help"], (name, field.name)
            assert field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
