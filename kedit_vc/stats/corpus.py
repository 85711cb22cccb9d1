"""Text to measure key statistics on, without downloading anything.

ROME and MEMIT estimate ``C = E[k kᵀ]`` on Wikipedia; there is no Wikipedia here. The
default corpus is therefore text the model writes itself: seeded top-k sampling from
the document separator, so it follows the model's own distribution of contexts, and the
same model and seed always give the same tokens. A user may pass a text file or folder
instead (``KVC_STATS_TEXT`` or the ``corpus`` argument).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from kedit_vc.errors import UsageError
from kedit_vc.models.families import max_positions
from kedit_vc.models.forward import decode_step
from kedit_vc.models.prompting import prefix_ids

SAMPLE_LENGTH = 128     # tokens per sampled document
SAMPLE_BATCH = 256      # documents generated together (decoding is memory-bound: batch wide)
SAMPLE_TOP_K = 40


def corpus_id(corpus: str | None, seed: int) -> str:
    if corpus is None:
        return f"self-sampled-s{seed}-k{SAMPLE_TOP_K}-l{SAMPLE_LENGTH}"
    path = Path(corpus)
    if not path.exists():
        raise UsageError(f"statistics corpus {corpus}: no such file or folder (set KVC_STATS_TEXT to a text "
                         "file or a folder of .txt files, or unset it to use the model's own samples)")
    dataset = _is_saved_dataset(path)
    files = _dataset_files(path) if dataset else sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"statistics corpus {corpus}: the folder holds no .txt files")
    digest = hashlib.sha256()
    for file in files:   # streamed: a corpus larger than memory is hashed in 1 MiB reads
        digest.update(file.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return ("dataset-" if dataset else "text-") + digest.hexdigest()[:16]


def _is_saved_dataset(path: Path) -> bool:
    """A folder written by ``datasets.Dataset.save_to_disk`` (state.json + arrow files)."""
    return path.is_dir() and (path / "state.json").is_file() and (path / "dataset_info.json").is_file()


def _dataset_files(path: Path) -> list[Path]:
    return sorted([path / "state.json", path / "dataset_info.json", *path.glob("*.arrow")])


def _file_texts(file: Path, block_chars: int = 1 << 16) -> Iterator[str]:
    """A text file in pieces of about ``block_chars`` cut at line ends: never all in memory."""
    with file.open(encoding="utf-8", errors="replace") as handle:
        piece: list[str] = []
        size = 0
        for line in handle:
            piece.append(line)
            size += len(line)
            if size >= block_chars:
                yield "".join(piece)
                piece, size = [], 0
        if piece:
            yield "".join(piece)


def _dataset_texts(path: Path, column: str = "text") -> Iterator[str]:
    """The ``text`` column of a dataset saved on disk, row by row (memory-mapped arrow)."""
    try:
        import datasets
    except ImportError:
        raise UsageError(f"statistics corpus {path}: a saved `datasets` dataset needs `pip install datasets`"
                         ) from None
    data = datasets.load_from_disk(str(path))
    if column not in data.column_names:
        raise UsageError(f"statistics corpus {path}: the dataset has no {column!r} column "
                         f"(columns: {', '.join(data.column_names)})")
    for row in data:
        yield str(row[column])


@torch.no_grad()
def sample_documents(model: torch.nn.Module, tokenizer: Any, n_tokens: int, seed: int,
                     on_step: Callable[[bool], None] | None = None) -> Iterator[torch.Tensor]:
    """Sample documents of SAMPLE_LENGTH tokens with a KV cache; yield each batch [b, t].

    ``on_step(counts)`` is called before every forward; ``counts`` is False for the first
    forward of a batch, which reads only the prefix token (the attention sink, whose keys
    are outliers no edit ever uses), so statistics hooks can skip it.
    """
    generator = torch.Generator().manual_seed(seed)
    start = prefix_ids(tokenizer) or [tokenizer.eos_token_id or 0]
    length = min(SAMPLE_LENGTH, max_positions(model) - len(start))
    produced = 0
    while produced < n_tokens:
        batch = min(SAMPLE_BATCH, max(1, (n_tokens - produced + length - 1) // length))
        ids = torch.tensor([start] * batch, dtype=torch.long)
        cache = None
        step_input = ids
        for step in range(length):
            if on_step is not None:
                on_step(step > 0)
            logits, cache = decode_step(model, step_input, cache)
            # Sampled on the CPU with a CPU generator: the same tokens whatever device the model is on.
            top = logits[:, -1].float().cpu().topk(SAMPLE_TOP_K, dim=-1)
            choice = torch.multinomial(torch.softmax(top.values, -1), 1, generator=generator)
            step_input = top.indices.gather(-1, choice)
            ids = torch.cat([ids, step_input], dim=-1)
        produced += batch * (length - 1)
        yield ids


def text_batches(tokenizer: Any, corpus: str, n_tokens: int, max_length: int = SAMPLE_LENGTH,
                 ) -> Iterator[torch.Tensor]:
    """Yield [1, <=SAMPLE_LENGTH] token chunks of a text file, a folder of .txt files or a
    ``datasets`` dataset saved on disk, streamed: stops reading once ``n_tokens`` are yielded."""
    path = Path(corpus)
    if not path.exists():
        raise UsageError(f"statistics corpus {corpus}: no such file or folder (set KVC_STATS_TEXT to a text "
                         "file or a folder of .txt files, or unset it to use the model's own samples)")
    if _is_saved_dataset(path):
        texts: Iterator[str] = _dataset_texts(path)
    else:
        files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
        if not files:
            raise UsageError(f"statistics corpus {corpus}: the folder holds no .txt files")
        if not all(f.is_file() for f in files):
            raise UsageError(f"statistics corpus {corpus!r}: no such text file or folder of .txt files")
        texts = (text for file in files for text in _file_texts(file))
    produced = 0
    prefix = prefix_ids(tokenizer)
    length = min(SAMPLE_LENGTH, max_length) - len(prefix)
    pending: list[int] = []
    for text in texts:
        pending.extend(tokenizer(text, add_special_tokens=False).input_ids)
        while len(pending) >= length:
            chunk = prefix + pending[:length]
            del pending[:length]
            yield torch.tensor([chunk])
            produced += len(chunk)
            if produced >= n_tokens:
                return
    if pending:
        yield torch.tensor([prefix + pending])
