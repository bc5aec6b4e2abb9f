"""Model files and model directories: round trips, and loading refuses anything unsafe
without executing it (selfdistill.modelio)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from selfdistill import __version__
from selfdistill.errors import ModelFileError
from selfdistill.modelio.bundle import MANIFEST, load_bundle_models, read_bundle, save_bundle
from selfdistill.modelio.jsonio import FORMAT_VERSION
from selfdistill.modelio.weights import load_arrays, load_model, save_model
from selfdistill.nn.mlp import MLP

N_FEATURES = 5


def _models(n: int = 2) -> list[MLP]:
    out = []
    for i in range(n):
        torch.manual_seed(i)
        out.append(MLP(N_FEATURES, 3, hidden=(8,), dropout=0.1).eval())
    return out


def _save(path: Path, classes: Any = ("bull", "bear", "sideways"), n: int = 2) -> Path:
    return save_bundle(path, _models(n), member_keys=[{"generation": i} for i in range(n)],
                       classes=np.asarray(classes), feature_names=[f"f{i}" for i in range(5)],
                       selected=n - 1, method="born_again", temperature=1.3,
                       scaler={"kind": "standard", "clip": 10.0, "center": [0.0] * 5,
                               "scale": [1.0] * 5},
                       extra={"labels": {"horizon": 12}})


class _Boom:
    """Unpickling this would create ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.makedirs, (str(self.marker),))


def _rewrite_json(path: Path, **changes: Any) -> None:
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _refresh_manifest_hash(model_dir: Path, member: int = 0) -> None:
    """Re-sign a member JSON in the manifest, as an attacker who edits both would."""
    manifest = json.loads((model_dir / MANIFEST).read_text())
    data = (model_dir / f"member_{member}.json").read_bytes()
    manifest["members"][member]["sha256"] = hashlib.sha256(data).hexdigest()
    (model_dir / MANIFEST).write_text(json.dumps(manifest))


# ---------------------------------------------------------------- round trips


def test_bundle_round_trip_gives_identical_probabilities(tmp_path: Path) -> None:
    models = _models()
    _save(tmp_path / "m")
    loaded, bundle = load_bundle_models(tmp_path / "m")
    x = torch.randn(32, N_FEATURES)
    for before, after in zip(models, loaded, strict=True):
        assert torch.equal(torch.softmax(before(x), -1), torch.softmax(after(x), -1))
    assert bundle.selected == 1
    assert bundle.temperature == 1.3
    assert bundle.method == "born_again"
    assert bundle.member_keys == [{"generation": 0}, {"generation": 1}]
    assert bundle.feature_names == tuple(f"f{i}" for i in range(5))
    assert bundle.extra == {"labels": {"horizon": 12}}
    assert not loaded[0].training


@pytest.mark.parametrize("classes", [
    np.array(["bull", "bear", "sideways"]),
    np.array([-3, 7, 100]),
    np.array([0.5, 1.5, 2.5]),
    np.array(["a", "bb", "ccc"], dtype=object),
])
def test_classes_keep_values_and_dtype(tmp_path: Path, classes: np.ndarray) -> None:
    _save(tmp_path / "m", classes)
    got = read_bundle(tmp_path / "m").classes
    assert got.dtype == classes.dtype
    assert got.tolist() == classes.tolist()


def test_member_file_round_trip_keeps_metadata(tmp_path: Path) -> None:
    model = _models(1)[0]
    meta_path = save_model(model, tmp_path / "gen.0", {"keys": {"generation": 0}})
    assert meta_path.name == "gen.0.json"
    loaded, meta = load_model(tmp_path / "gen.0")
    assert meta["keys"] == {"generation": 0}
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["selfdistill_version"] == __version__
    assert torch.equal(loaded.head.weight, model.head.weight)
    arrays, _ = load_arrays(meta_path)
    np.testing.assert_array_equal(arrays["head.weight"], model.head.weight.detach().numpy())


def test_history_with_nan_is_stored_as_null(tmp_path: Path) -> None:
    history = [{"epoch": 1.0, "val_loss": float("nan"), "train_loss": np.float32(0.5)}]
    save_bundle(tmp_path / "m", _models(1), member_keys=[{"generation": None}], classes=[0, 1, 2],
                feature_names=list("abcde"), selected=0, member_meta=[{"history": history}])
    meta = json.loads((tmp_path / "m" / "member_0.json").read_text())
    assert meta["history"] == [{"epoch": 1.0, "val_loss": None, "train_loss": 0.5}]
    assert meta["keys"] == {"generation": None}


def test_resaving_fewer_members_removes_stale_files(tmp_path: Path) -> None:
    _save(tmp_path / "m", n=3)
    _save(tmp_path / "m", n=1)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted([
        MANIFEST, "member_0.json", "member_0.safetensors"])


def test_save_rejects_a_selected_index_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="selected=2"):
        save_bundle(tmp_path / "m", _models(2), member_keys=[{}, {}], classes=[0, 1, 2],
                    feature_names=list("abcde"), selected=2)


def test_saving_onto_a_file_is_refused_and_keeps_it(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("user data")
    with pytest.raises(ModelFileError, match="is a file; a model is saved as a directory"):
        _save(target, n=1)
    assert target.read_text() == "user data"


# ---------------------------------------------------------------- versions


def test_newer_format_version_asks_to_upgrade(tmp_path: Path) -> None:
    _save(tmp_path / "m")
    _rewrite_json(tmp_path / "m" / MANIFEST, format_version=FORMAT_VERSION + 1)
    with pytest.raises(ModelFileError,
                       match=rf"format version {FORMAT_VERSION + 1}.*upgrade selfdistill"):
        read_bundle(tmp_path / "m")


def test_newer_member_format_version_asks_to_upgrade(tmp_path: Path) -> None:
    _save(tmp_path / "m")
    _rewrite_json(tmp_path / "m" / "member_0.json", format_version=99)
    _refresh_manifest_hash(tmp_path / "m")
    with pytest.raises(ModelFileError, match=r"format version 99.*upgrade"):
        load_bundle_models(tmp_path / "m")


@pytest.mark.parametrize("version", [None, "1", True, 0])
def test_missing_or_malformed_format_version_is_refused(tmp_path: Path, version: Any) -> None:
    _save(tmp_path / "m")
    _rewrite_json(tmp_path / "m" / MANIFEST, format_version=version)
    with pytest.raises(ModelFileError, match="format_version"):
        read_bundle(tmp_path / "m")


# ---------------------------------------------------------- tampering / truncation


def test_tampered_weights_fail_the_checksum(tmp_path: Path) -> None:
    _save(tmp_path / "m")
    weights = tmp_path / "m" / "member_1.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="modified or truncated"):
        load_bundle_models(tmp_path / "m")


def test_truncated_weights_fail_cleanly(tmp_path: Path) -> None:
    _save(tmp_path / "m")
    weights = tmp_path / "m" / "member_0.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ModelFileError, match="sha256"):
        load_arrays(tmp_path / "m" / "member_0")


def test_truncated_weights_with_a_matching_hash_fail_to_parse(tmp_path: Path) -> None:
    _save(tmp_path / "m")
    weights = tmp_path / "m" / "member_0.safetensors"
    short = weights.read_bytes()[:40]
    weights.write_bytes(short)
    _rewrite_json(tmp_path / "m" / "member_0.json", sha256=hashlib.sha256(short).hexdigest())
    with pytest.raises(ModelFileError, match="cannot"):
        load_model(tmp_path / "m" / "member_0")
    with pytest.raises(ModelFileError, match="cannot parse") as info:
        load_arrays(tmp_path / "m" / "member_0")
    assert info.value.__cause__ is not None  # safetensors' own error, for --debug


@pytest.mark.parametrize("name", [MANIFEST, "member_0.json"])
def test_truncated_json_fails_cleanly(tmp_path: Path, name: str) -> None:
    _save(tmp_path / "m")
    path = tmp_path / "m" / name
    path.write_bytes(path.read_bytes()[:25])
    with pytest.raises(ModelFileError):
        load_bundle_models(tmp_path / "m")


def test_edited_member_json_fails_the_manifest_checksum(tmp_path: Path) -> None:
    _save(tmp_path / "m")
    _rewrite_json(tmp_path / "m" / "member_0.json", spec={"kind": "mlp", "n_features": 5,
                                                          "n_classes": 3, "hidden": [9]})
    with pytest.raises(ModelFileError, match="does not match the sha256"):
        read_bundle(tmp_path / "m")


def test_spec_that_disagrees_with_the_weights_is_refused(tmp_path: Path) -> None:
    _save(tmp_path / "m")
    _rewrite_json(tmp_path / "m" / "member_0.json", spec={"kind": "mlp", "n_features": 5,
                                                          "n_classes": 3, "hidden": [9]})
    _refresh_manifest_hash(tmp_path / "m")
    with pytest.raises(ModelFileError, match="cannot load") as info:
        load_bundle_models(tmp_path / "m")
    assert isinstance(info.value.__cause__, RuntimeError)  # torch's size mismatch, for --debug


def test_member_files_may_not_leave_the_directory(tmp_path: Path) -> None:
    _save(tmp_path / "m")
    _rewrite_json(tmp_path / "m" / "member_0.json", weights="../../etc/passwd")
    _refresh_manifest_hash(tmp_path / "m")
    with pytest.raises(ModelFileError, match="not a plain file name"):
        load_bundle_models(tmp_path / "m")


def test_a_directory_without_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        read_bundle(tmp_path)


# ------------------------------------------------------------------- pickles


@pytest.mark.parametrize("suffix", [".pkl", ".pickle", ".pt", ".joblib"])
def test_pickle_paths_are_refused_without_being_opened(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / f"model{suffix}"
    path.write_bytes(pickle.dumps(_Boom(marker)))
    for loader in (read_bundle, load_model, load_arrays, load_bundle_models):
        with pytest.raises(ModelFileError, match="never unpickles"):
            loader(path)
    assert not marker.exists()


def test_pickle_payload_in_place_of_weights_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _save(tmp_path / "m")
    payload = pickle.dumps(_Boom(marker))
    (tmp_path / "m" / "member_0.safetensors").write_bytes(payload)
    _rewrite_json(tmp_path / "m" / "member_0.json", sha256=hashlib.sha256(payload).hexdigest())
    _refresh_manifest_hash(tmp_path / "m")
    with pytest.raises(ModelFileError, match="cannot"):
        load_bundle_models(tmp_path / "m")
    with pytest.raises(ModelFileError, match="cannot parse"):
        load_arrays(tmp_path / "m" / "member_0")
    assert not marker.exists()


def test_torch_checkpoint_in_place_of_weights_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _save(tmp_path / "m")
    weights = tmp_path / "m" / "member_0.safetensors"
    torch.save({"state": _Boom(marker)}, weights)  # a zip holding a pickle
    payload = weights.read_bytes()
    _rewrite_json(tmp_path / "m" / "member_0.json", sha256=hashlib.sha256(payload).hexdigest())
    _refresh_manifest_hash(tmp_path / "m")
    with pytest.raises(ModelFileError):
        load_bundle_models(tmp_path / "m")
    assert not marker.exists()


def test_pickle_payload_in_place_of_json_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _save(tmp_path / "m")
    (tmp_path / "m" / MANIFEST).write_bytes(pickle.dumps(_Boom(marker)))
    with pytest.raises(ModelFileError, match="not valid JSON"):
        read_bundle(tmp_path / "m")
    assert not marker.exists()
