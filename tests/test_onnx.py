"""ONNX export agrees with torch (and the NumPy path) and keeps onnxruntime quiet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from selfdistill.config import ModelConfig
from selfdistill.errors import ModelFileError
from selfdistill.features import Scaler
from selfdistill.modelio.bundle import save_bundle
from selfdistill.nn.mlp import MLP
from selfdistill.nn.multi_exit import MultiExitMLP
from selfdistill.nn.registry import build_model
from selfdistill.serving import onnx as onnx_module
from selfdistill.serving.numpy_runtime import NumpyModel, OnnxModel
from selfdistill.serving.onnx import export_onnx, probability_model

F = 5


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    scaler = Scaler("standard", clip=4.0).fit(rng.normal(1.0, 3.0, size=(300, F)))
    models = [MLP(F, 3, hidden=(16, 16), activation="gelu", dropout=0.1) for _ in range(2)]
    return save_bundle(tmp_path / "m", models, member_keys=[{"generation": 0}, {"generation": 1}],
                       classes=["bull", "bear", "sideways"], feature_names=list("abcde"),
                       selected=1, temperature=2.0, scaler=scaler.to_dict())


def test_export_matches_torch_and_numpy(model_dir: Path, tmp_path: Path) -> None:
    report = export_onnx(model_dir, tmp_path / "m.onnx")
    assert report["max_abs_diff"] <= onnx_module.EXPORT_ATOL
    assert report["member"] == 1
    x = np.random.default_rng(2).normal(1.0, 10.0, size=(7, F)).astype(np.float32)
    onnx = OnnxModel(tmp_path / "m.onnx")
    torch_model, _ = probability_model(model_dir, None)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx.predict_proba(x), expected, atol=1e-5)
    np.testing.assert_allclose(onnx.predict_proba(x[0]), expected[0], atol=1e-5)  # batch 1
    np.testing.assert_allclose(NumpyModel.from_dir(model_dir).predict_proba(x), expected,
                               atol=1e-5)


def test_export_of_another_member(model_dir: Path, tmp_path: Path) -> None:
    report = export_onnx(model_dir, tmp_path / "g0.onnx", member=0)
    assert report["member"] == 0
    x = np.zeros((1, F), dtype=np.float32)
    p0 = OnnxModel(tmp_path / "g0.onnx").predict_proba(x)
    export_onnx(model_dir, tmp_path / "g1.onnx")
    assert not np.allclose(p0, OnnxModel(tmp_path / "g1.onnx").predict_proba(x))
    with pytest.raises(ModelFileError, match="member 5"):
        export_onnx(model_dir, tmp_path / "bad.onnx", member=5)


def test_each_exit_of_a_multi_exit_network_exports(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    scaler = Scaler("standard", clip=4.0).fit(rng.normal(0.0, 2.0, size=(300, F)))
    net = MultiExitMLP(F, 3, hidden=(12, 10, 8), bottleneck=6)
    model_dir = save_bundle(tmp_path / "m", [net] * 3,
                            member_keys=[{"exit": i + 1} for i in range(3)],
                            classes=["bull", "bear", "sideways"], feature_names=list("abcde"),
                            selected=2, temperature=1.5, scaler=scaler.to_dict(),
                            member_meta=[{"output": i} for i in range(3)])
    x = rng.normal(0.0, 5.0, size=(9, F)).astype(np.float32)
    z = torch.as_tensor(scaler.transform(x), dtype=torch.float32)
    with torch.no_grad():
        exits = net.eval()(z).logits
    numpy_members = NumpyModel.from_dir(model_dir).predict_proba_members(x)
    for i in range(3):
        export_onnx(model_dir, tmp_path / f"exit{i}.onnx", member=i)
        got = OnnxModel(tmp_path / f"exit{i}.onnx").predict_proba(x)
        np.testing.assert_allclose(got, torch.softmax(exits[i] / 1.5, -1).numpy(), atol=1e-5)
        np.testing.assert_allclose(got, numpy_members[i], atol=1e-5)


def test_kinds_without_a_feature_graph_are_refused_by_name(tmp_path: Path) -> None:
    window_model = build_model(ModelConfig(kind="cnn", hidden=[4], window=3), F, 3)
    model_dir = save_bundle(tmp_path / "w", [window_model], member_keys=[{}], classes=[0, 1, 2],
                            feature_names=list("abcde"), selected=0)
    with pytest.raises(ModelFileError, match=r"model kind 'cnn' .* cannot be exported to ONNX"):
        export_onnx(model_dir, tmp_path / "w.onnx")
    assert not (tmp_path / "w.onnx").exists()


def test_a_failed_check_leaves_no_file(model_dir: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_module, "EXPORT_ATOL", -1.0)
    with pytest.raises(ModelFileError, match="differs from torch"):
        export_onnx(model_dir, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_a_broken_onnx_file_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="cannot load ONNX") as info:
        OnnxModel(tmp_path / "x.onnx")
    assert info.value.__cause__ is not None  # onnxruntime's own error, for --debug


def test_onnxruntime_runs_without_torch_and_writes_no_telemetry(model_dir: Path,
                                                                tmp_path: Path) -> None:
    export_onnx(model_dir, tmp_path / "m.onnx")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["HOME"] = str(home)
    code = ("import sys\nimport numpy as np\n"
            "from selfdistill.serving.numpy_runtime import OnnxModel\n"
            f"OnnxModel({str(tmp_path / 'm.onnx')!r}).predict_proba(np.zeros(5))\n"
            "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert not (home / ".cache" / "Microsoft").exists()


def test_the_old_import_path_is_an_alias_of_the_exporter() -> None:
    from selfdistill import onnx_export

    assert onnx_export.__all__ == onnx_module.__all__
    for name in onnx_module.__all__:
        assert getattr(onnx_export, name) is getattr(onnx_module, name)
