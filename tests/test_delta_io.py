"""Delta files: safetensors round-trip, canonical hash, refusal of altered files."""

from __future__ import annotations

import json
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delta_strategies import deltas
from kedit_vc.delta import Delta, DeltaError, Dense, LowRank

ALL_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
TMP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def split_header(data: bytes) -> tuple[dict, bytes]:
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def join_header(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + body


def assert_same(a: Delta, b: Delta) -> None:
    assert list(a.updates) == list(b.updates) and dict(a.meta) == dict(b.meta)
    for name in a.updates:
        pa, pb = a.updates[name].parts(), b.updates[name].parts()
        assert list(pa) == list(pb)
        for part in pa:
            assert pa[part].dtype == pb[part].dtype and torch.equal(pa[part], pb[part])


@TMP
@given(deltas(dtypes=ALL_DTYPES))
def test_save_load_round_trip_keeps_content_and_hash(tmp_path, delta):
    path = tmp_path / "delta.safetensors"
    delta.save(path)
    loaded = Delta.load(path, expected_hash=delta.content_hash())
    assert loaded.content_hash() == delta.content_hash()
    assert_same(loaded, delta)
    assert [p.name for p in tmp_path.iterdir()] == ["delta.safetensors"]  # no temporary file left


@settings(max_examples=30, deadline=None)
@given(deltas(), st.randoms(use_true_random=False))
def test_hash_ignores_header_key_order(delta, rnd):
    header, body = split_header(delta.to_bytes())
    items = list(header.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    metadata = list(shuffled["__metadata__"].items())
    rnd.shuffle(metadata)
    shuffled["__metadata__"] = dict(metadata)
    loaded = Delta.from_bytes(join_header(shuffled, body))
    assert loaded.content_hash() == delta.content_hash()
    assert_same(loaded, delta)


@settings(max_examples=60, deadline=None)
@given(deltas(), st.data())
def test_any_altered_tensor_byte_is_refused(delta, data):
    raw = bytearray(delta.to_bytes())
    size = int.from_bytes(raw[:8], "little")
    position = data.draw(st.integers(8 + size, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DeltaError, match="altered or is corrupt"):
        Delta.from_bytes(bytes(raw))


def _rewrite(delta: Delta, edit) -> bytes:
    header, body = split_header(delta.to_bytes())
    edit(header)
    return join_header(header, body)


def test_altered_header_is_refused():
    delta = Delta({"w": LowRank(torch.ones(3, 1), torch.ones(2, 1))}, {"method": "rome"})

    def change_meta(h):
        h["__metadata__"]["meta"] = json.dumps({"method": "memit"})

    def change_recorded_hash(h):
        h["__metadata__"]["content_hash"] = "0" * 64

    def rename_tensor(h):
        h["v::left"] = h.pop("w::left")
        h["v::right"] = h.pop("w::right")

    for edit in (change_meta, change_recorded_hash, rename_tensor):
        with pytest.raises(DeltaError, match="altered or is corrupt"):
            Delta.from_bytes(_rewrite(delta, edit))


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda h: h["__metadata__"].update(format="other"), "not 'kvc-delta'"),
        (lambda h: h["__metadata__"].update(format_version="9"), "format_version"),
        (lambda h: h["__metadata__"].update(meta="[1]"), "JSON object"),
        (lambda h: h.update({"w::middle": h.pop("w::right")}), "expected one of"),
        (lambda h: h.update({"w": h.pop("w::right")}), "not named"),
    ],
)
def test_malformed_structure_is_refused(edit, message):
    delta = Delta({"w": LowRank(torch.ones(3, 1), torch.ones(2, 1))})
    with pytest.raises(DeltaError, match=message):
        Delta.from_bytes(_rewrite(delta, edit))


def test_expected_hash_mismatch_is_refused(tmp_path):
    path = tmp_path / "d.safetensors"
    Delta({"b": Dense(torch.zeros(2))}).save(path)
    with pytest.raises(DeltaError, match="not the expected delta"):
        Delta.load(path, expected_hash="f" * 64)


def test_non_delta_files_are_refused(tmp_path):
    pickle_file = tmp_path / "pickle.pt"
    torch.save({"w::value": torch.ones(2)}, pickle_file)
    plain = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"w::value": torch.ones(2)}, plain)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(bytes(random.Random(0).getrandbits(8) for _ in range(100)))
    for path in (pickle_file, plain, garbage, tmp_path / "missing"):
        with pytest.raises(DeltaError):
            Delta.load(path)


def test_truncated_file_is_refused(tmp_path):
    data = Delta({"w": LowRank(torch.ones(30, 2), torch.ones(20, 2))}).to_bytes()
    for cut in (4, 20, len(data) // 2, len(data) - 1):
        with pytest.raises(DeltaError):
            Delta.from_bytes(data[:cut])


def test_factors_sharing_storage_save_fine(tmp_path):
    base = torch.randn(5, 2)
    delta = Delta({"w": LowRank(base[:, :1], base[:, 1:])})  # two views of one tensor
    path = tmp_path / "d.safetensors"
    delta.save(path)
    assert Delta.load(path).content_hash() == delta.content_hash()


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "d.safetensors"
    Delta({"b": Dense(torch.zeros(2))}).save(path)
    new = Delta({"b": Dense(torch.ones(2))})
    new.save(path)
    assert Delta.load(path).content_hash() == new.content_hash()
