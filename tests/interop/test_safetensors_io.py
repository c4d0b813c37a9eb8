"""Our safetensors reader/writer: byte-identical to the `safetensors` package, and every damaged file refused."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from llm_lit.interop import safetensors_io as st

safetensors_torch = pytest.importorskip("safetensors.torch")


def _mixed_tensors(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "layers.0.w": torch.randn(3, 5, generator=g),
        "b": torch.randn(7, generator=g).to(torch.bfloat16),
        "a": torch.randn(2, 2, generator=g).to(torch.float16),
        "ids": torch.randint(-5, 5, (4,), generator=g),
        "ids32": torch.randint(-5, 5, (4, 1), generator=g, dtype=torch.int32),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "empty": torch.zeros(0, 3),
        "mask": torch.rand(5, generator=g) > 0.5,
        "bytes": torch.randint(0, 255, (3,), generator=g, dtype=torch.uint8),
        "small": torch.randint(-9, 9, (3,), generator=g, dtype=torch.int8),
        "h16": torch.randint(-9, 9, (3,), generator=g, dtype=torch.int16),
        "f8": torch.randn(4, generator=g).to(torch.float8_e4m3fn),
        "f8b": torch.randn(4, generator=g).to(torch.float8_e5m2),
        "é_unicode": torch.randn(2, generator=g),
    }


def _raw(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8)


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}, {"ü": "ß"}])
@pytest.mark.parametrize("seed", [0, 1])
def test_bytes_equal_the_safetensors_package(metadata, seed):
    tensors = _mixed_tensors(seed)
    assert st.serialize(tensors, metadata) == safetensors_torch.save(tensors, metadata=metadata)


def test_several_metadata_keys_give_the_same_header_and_data():
    # The package writes metadata keys in a random (hash) order, so only the parsed header can match.
    tensors, metadata = _mixed_tensors(3), {"a": "1", "b": "2", "c": "3"}
    ours, theirs = st.serialize(tensors, metadata), safetensors_torch.save(tensors, metadata=metadata)
    n = struct.unpack("<Q", ours[:8])[0]
    assert len(ours) == len(theirs) and ours[:8] == theirs[:8] and ours[8 + n:] == theirs[8 + n:]
    assert json.loads(ours[8:8 + n]) == json.loads(theirs[8:8 + n])


def test_non_contiguous_tensors_are_written_as_their_contiguous_copy():
    t = torch.randn(4, 6).T  # the package refuses these; we lay them out row-major
    assert st.serialize({"t": t}) == safetensors_torch.save({"t": t.contiguous()})


def test_reads_what_the_package_writes_and_vice_versa(tmp_path):
    tensors = _mixed_tensors(2)
    theirs = st.deserialize(safetensors_torch.save(tensors, metadata={"format": "pt"}))
    path = tmp_path / "ours.safetensors"
    st.save_file(tensors, path, metadata={"format": "pt"})
    ours_by_them = safetensors_torch.load_file(str(path))
    for name, t in tensors.items():
        for other in (theirs[name], ours_by_them[name], st.load_file(path)[name]):
            assert other.dtype == t.dtype and other.shape == t.shape
            assert torch.equal(_raw(other), _raw(t))
    assert st.read_metadata(path) == {"format": "pt"}
    assert [p.name for p in tmp_path.iterdir()] == ["ours.safetensors"]  # no temporary file left


def test_loaded_tensors_are_writable_and_independent(tmp_path):
    path = tmp_path / "x.safetensors"
    st.save_file({"x": torch.ones(3)}, path)
    x = st.load_file(path)["x"]
    x += 1
    assert torch.equal(st.load_file(path)["x"], torch.ones(3))


def _write_raw(path, header: dict, data: bytes = b"", header_len: int | None = None) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if header_len is None else header_len) + text + data)


@pytest.mark.parametrize(
    "header, data, header_len, message",
    [
        ({}, b"", 10**6, r"header length 1000000 does not fit"),
        ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, None, r"'x' ends past the end of the file"),
        ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, None, r"gives 'x' 4 bytes but its shape and dtype need 8"),
        ({"x": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, None, r"stores 'x' as 'Q9', which torch cannot hold"),
        ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
          "y": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, None, r"overlapping or gapped"),
        ({"x": {"dtype": "F32", "shape": "1"}}, b"", None, r"malformed entry for 'x'"),
        ({"__metadata__": {"a": 1}}, b"", None, r"__metadata__ that is not string -> string"),
        ([1, 2], b"", None, r"header is not a JSON object"),
    ],
)
def test_damaged_files_are_refused(tmp_path, header, data, header_len, message):
    path = tmp_path / "bad.safetensors"
    _write_raw(path, header, data, header_len)
    with pytest.raises(st.SafetensorsError, match=message):
        st.load_file(path)


def test_short_missing_and_non_json_files_are_refused(tmp_path):
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x00")
    with pytest.raises(st.SafetensorsError, match=r"truncated or not safetensors \(shorter than 8 bytes\); re-export or re-download it"):
        st.load_file(tmp_path / "short.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(struct.pack("<Q", 3) + b"{{{")
    with pytest.raises(st.SafetensorsError, match=r"its header is not JSON"):
        st.load_file(tmp_path / "junk.safetensors")
    with pytest.raises(st.SafetensorsError, match=r"does not exist; check the path"):
        st.load_file(tmp_path / "missing.safetensors")
    with pytest.raises(st.SafetensorsError, match=r"is a folder, not a safetensors file"):
        st.load_file(tmp_path)


def test_bad_inputs_to_the_writer_are_refused(tmp_path):
    shared = torch.zeros(4)
    with pytest.raises(st.SafetensorsError, match=r"'b' shares memory with 'a' \(e.g. tied weights\)"):
        st.serialize({"a": shared, "b": shared})
    with pytest.raises(st.SafetensorsError, match=r"'a' is a list, not a tensor"):
        st.serialize({"a": [1, 2]})
    with pytest.raises(st.SafetensorsError, match=r"dtype torch.complex64, which safetensors cannot store"):
        st.serialize({"a": torch.zeros(2, dtype=torch.complex64)})
    with pytest.raises(st.SafetensorsError, match=r"metadata must map strings to strings"):
        st.serialize({"a": torch.zeros(2)}, {"n": 1})
    with pytest.raises(st.SafetensorsError, match=r"name '__metadata__' cannot be stored"):
        st.serialize({"__metadata__": torch.zeros(2)})
    (tmp_path / "file").write_text("x")
    with pytest.raises(st.SafetensorsError, match=r"Cannot write safetensors file .* choose a writable folder"):
        st.save_file({"a": torch.zeros(2)}, tmp_path / "file" / "x.safetensors")
