"""Integrity of checkpoints (SHA-256 over the contents, format version 2) and engine files (SHA-256 over
header and payload, container version 2), and that the version-1 files written before still load."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile

import pytest
import torch

from lfdn_edge.artifact.file import EngineError, read_engine
from lfdn_edge.checkpoint import (FORMAT_VERSION, INTEGRITY_KEY, Checkpoint, CheckpointError, load_checkpoint_dict,
                                  payload_digest)
from reliability_common import harness


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return harness().make_checkpoint(tmp_path_factory.mktemp("integrity") / "ckpt.pt")


def _storage_offset(raw: bytes, name_part: str = "/data/") -> int:
    z = zipfile.ZipFile(io.BytesIO(raw))
    info = max((i for i in z.infolist() if name_part in i.filename), key=lambda i: i.file_size)
    nl, el = struct.unpack_from("<HH", raw, info.header_offset + 26)
    return info.header_offset + 30 + nl + el + info.file_size // 2


def test_a_flipped_bit_in_a_weight_tensor_is_refused(ckpt, tmp_path):
    raw = bytearray(ckpt.path.read_bytes())
    raw[_storage_offset(bytes(raw))] ^= 0x10
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(raw))
    torch.load(bad, weights_only=True)  # torch itself does not notice (zip CRCs are not checked)
    with pytest.raises(CheckpointError, match="corrupted"):
        Checkpoint.load(bad)


def test_digest_is_canonical_and_typed(ckpt):
    d = dict(ckpt.data)
    assert d["format_version"] == FORMAT_VERSION == 2 and d[INTEGRITY_KEY]["algorithm"] == "sha256"
    assert payload_digest(d) == d[INTEGRITY_KEY]["digest"]
    assert payload_digest(dict(reversed(list(d.items())))) == payload_digest(d)  # key order does not matter
    for change in ({"num_train": 257}, {"num_train": 256.0}, {"num_train": "256"}):
        assert payload_digest(dict(d, **change)) != payload_digest(d), change
    ema = dict(d["ema"])
    name = next(iter(ema))
    assert payload_digest(dict(d, ema=dict(ema, **{name: ema[name].double()}))) != payload_digest(d)  # dtype counts


def test_legacy_version_1_loads_unverified_and_is_upgraded_on_save(ckpt, tmp_path):
    d = {k: v for k, v in load_checkpoint_dict(ckpt.path).items() if k != INTEGRITY_KEY}
    d["format_version"] = 1
    torch.save(d, tmp_path / "v1.pt")
    old = Checkpoint.load(tmp_path / "v1.pt")
    assert torch.equal(next(iter(old.data["ema"].values())), next(iter(ckpt.data["ema"].values())))
    old.save(tmp_path / "v2.pt")
    new = load_checkpoint_dict(tmp_path / "v2.pt")
    assert new["format_version"] == 2 and new[INTEGRITY_KEY]["digest"] == payload_digest(new)


def test_version_2_without_or_with_a_wrong_digest_is_refused(ckpt, tmp_path):
    d = load_checkpoint_dict(ckpt.path)
    torch.save({k: v for k, v in d.items() if k != INTEGRITY_KEY}, tmp_path / "stripped.pt")
    with pytest.raises(CheckpointError, match="integrity entry is missing"):
        Checkpoint.load(tmp_path / "stripped.pt")
    torch.save(dict(d, num_train=1), tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="SHA-256"):
        Checkpoint.load(tmp_path / "edited.pt")


def _engine(tmp_path, ckpt):
    from lfdn_edge.builder.dispatch import build_engine

    return build_engine(ckpt.path, backend="onnx", batch=(1, 8, 16), out=tmp_path / "e.engine")


def test_engine_header_is_covered_by_the_checksum(ckpt, tmp_path):
    """Regression: version 1 checked the payload only, so an edit of the JSON that kept it valid (a stage
    size, the threshold) loaded silently with other numbers."""
    raw = _engine(tmp_path, ckpt).read_bytes()
    assert struct.unpack_from("<I", raw, 8)[0] == 2
    hlen = struct.unpack_from("<Q", raw, 12)[0]
    head = json.loads(raw[20:20 + hlen])
    head["thresholds"]["mfsim"] = head["thresholds"]["mfsim"] + 0.5
    new = json.dumps(head, sort_keys=True).encode()
    bad = raw[:12] + struct.pack("<Q", len(new)) + new + raw[20 + hlen:]
    (tmp_path / "edited.engine").write_bytes(bad)
    with pytest.raises(EngineError, match="corrupted"):
        read_engine(tmp_path / "edited.engine")


def test_version_1_engine_files_still_load(ckpt, tmp_path):
    import lfdn_edge
    import numpy as np

    path = _engine(tmp_path, ckpt)
    a = read_engine(path)
    head = json.dumps(dict(a.header, engine_format_version=1), sort_keys=True).encode()
    v1 = (b"LFDNENG\0" + struct.pack("<I", 1) + struct.pack("<Q", len(head)) + head + struct.pack("<Q", len(a.payload))
          + a.payload + hashlib.sha256(a.payload).digest())
    (tmp_path / "v1.engine").write_bytes(v1)
    x = harness().standardised(5, 0)
    np.testing.assert_array_equal(lfdn_edge.Scorer(tmp_path / "v1.engine").score(x), lfdn_edge.Scorer(path).score(x))
    flipped = bytearray(v1)
    flipped[-40] ^= 1  # in the payload
    (tmp_path / "v1bad.engine").write_bytes(bytes(flipped))
    with pytest.raises(EngineError, match="payload checksum"):
        read_engine(tmp_path / "v1bad.engine")
