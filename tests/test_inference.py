"""The torch-free NumPy forward agrees with torch and never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from selfdistill.config import FeaturesConfig
from selfdistill.errors import DataError, ModelFileError
from selfdistill.features import Scaler, compute_features, feature_names
from selfdistill.modelio.bundle import save_bundle
from selfdistill.nn.mlp import MLP, ConstantClassifier
from selfdistill.nn.multi_exit import MultiExitMLP
from selfdistill.serving.numpy_runtime import NumpyModel, latest_features

F = 6
NAMES = [f"f{i}" for i in range(F)]


def _scaler(kind: str = "standard") -> Scaler:
    rng = np.random.default_rng(3)
    return Scaler(kind, clip=3.0).fit(rng.normal(2.0, 5.0, size=(400, F)))  # type: ignore[arg-type]


def _save(path: Path, models: list[torch.nn.Module], scaler: Scaler | None,
          temperature: float = 1.0, selected: int = 0) -> Path:
    return save_bundle(path, models, member_keys=[{"generation": i} for i in range(len(models))],
                       classes=np.array(["bull", "bear", "sideways"]), feature_names=NAMES,
                       selected=selected, temperature=temperature,
                       scaler=scaler.to_dict() if scaler else None)


def _torch_proba(model: torch.nn.Module, scaler: Scaler | None, x: np.ndarray,
                 temperature: float = 1.0) -> np.ndarray:
    z = scaler.transform(x) if scaler else x.astype(np.float32)
    with torch.no_grad():
        logits = model.eval()(torch.as_tensor(z, dtype=torch.float32))
    return torch.softmax(logits.double() / temperature, dim=-1).numpy()


def _raw(n: int, seed: int = 0) -> np.ndarray:
    """Raw features around the training distribution, some beyond the scaler's clip."""
    return np.random.default_rng(seed).normal(2.0, 12.0, size=(n, F))


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh"])
@pytest.mark.parametrize("scaler_kind", ["standard", "robust", "none"])
def test_numpy_forward_matches_torch(tmp_path: Path, activation: str, scaler_kind: str) -> None:
    model = MLP(F, 3, hidden=(16, 8), activation=activation, dropout=0.2)
    scaler = _scaler(scaler_kind)
    _save(tmp_path / "m", [model], scaler, temperature=1.7)
    x = _raw(64)
    got = NumpyModel.from_dir(tmp_path / "m").predict_proba(x)
    np.testing.assert_allclose(got, _torch_proba(model, scaler, x, 1.7), atol=2e-6)


def test_single_sample_path_equals_the_batch_path(tmp_path: Path) -> None:
    _save(tmp_path / "m", [MLP(F, 3)], _scaler())
    nm = NumpyModel.from_dir(tmp_path / "m")
    x = _raw(5)
    batch = nm.predict_proba(x)
    for i in range(5):
        np.testing.assert_allclose(nm.predict_proba_one(x[i]), batch[i], rtol=1e-12)
        np.testing.assert_allclose(nm.predict_proba(x[i]), batch[i], rtol=1e-12)
    assert batch.shape == (5, 3)
    np.testing.assert_allclose(batch.sum(axis=1), 1.0)


def test_selected_member_predicts_and_all_members_give_disagreement(tmp_path: Path) -> None:
    models = [MLP(F, 3, hidden=(8,)) for _ in range(3)]
    scaler = _scaler()
    _save(tmp_path / "m", models, scaler, selected=2)
    nm = NumpyModel.from_dir(tmp_path / "m")
    x = _raw(20)
    members = nm.predict_proba_members(x)
    assert members.shape == (3, 20, 3)
    for m, probs in zip(models, members, strict=True):
        np.testing.assert_allclose(probs, _torch_proba(m, scaler, x), atol=2e-6)
    np.testing.assert_allclose(nm.predict_proba(x), members[2], rtol=1e-12)
    assert set(nm.predict(x)) <= {"bull", "bear", "sideways"}
    assert nm.n_members == 3


def test_dataframe_columns_are_matched_by_name(tmp_path: Path) -> None:
    _save(tmp_path / "m", [MLP(F, 3)], _scaler())
    nm = NumpyModel.from_dir(tmp_path / "m")
    x = _raw(4)
    frame = pd.DataFrame(x, columns=NAMES)[NAMES[::-1]]  # columns in another order
    np.testing.assert_allclose(nm.predict_proba(frame), nm.predict_proba(x))
    with pytest.raises(DataError, match="f0"):
        nm.predict_proba(frame.drop(columns="f0"))


def test_wrong_shapes_are_refused(tmp_path: Path) -> None:
    _save(tmp_path / "m", [MLP(F, 3)], _scaler())
    nm = NumpyModel.from_dir(tmp_path / "m")
    with pytest.raises(DataError, match=r"\(6,\)"):
        nm.predict_proba_one(np.zeros(F + 1))
    with pytest.raises(DataError, match=r"\(N, 6\)"):
        nm.predict_proba(np.zeros((2, F - 1)))


def test_constant_majority_model(tmp_path: Path) -> None:
    model = ConstantClassifier.from_labels(torch.tensor([0, 0, 0, 1, 2]), 3)
    _save(tmp_path / "m", [model], _scaler())
    got = NumpyModel.from_dir(tmp_path / "m").predict_proba(_raw(3))
    np.testing.assert_allclose(got, _torch_proba(model, _scaler(), _raw(3)), atol=1e-7)
    assert got[0].argmax() == 0


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("hidden", [(16, 8, 8), (12, 12)])
def test_multi_exit_members_match_torch_exit_by_exit(tmp_path: Path, activation: str,
                                                     hidden: tuple[int, ...]) -> None:
    # one member per exit, as BYOT saves them; bottleneck 8 equals the last width in one case
    model = MultiExitMLP(F, 3, hidden=hidden, activation=activation, dropout=0.3, bottleneck=8)
    depth = model.depth
    scaler = _scaler()
    save_bundle(tmp_path / "m", [model] * depth,
                member_keys=[{"exit": i + 1} for i in range(depth)],
                classes=np.array(["bull", "bear", "sideways"]), feature_names=NAMES,
                selected=depth - 1, temperature=1.3, scaler=scaler.to_dict(),
                member_meta=[{"output": i} for i in range(depth)])
    x = _raw(40)
    numpy_model = NumpyModel.from_dir(tmp_path / "m")
    members = numpy_model.predict_proba_members(x)  # (depth, N, C), each at T = 1.3
    z = torch.as_tensor(scaler.transform(x), dtype=torch.float32)
    with torch.no_grad():
        exits = model.eval()(z).logits
    for i in range(depth):
        expected = torch.softmax(exits[i].double() / 1.3, dim=-1).numpy()
        np.testing.assert_allclose(members[i], expected, atol=2e-6)
    np.testing.assert_allclose(numpy_model.predict_proba(x), members[depth - 1], atol=1e-12)
    assert not np.allclose(members[0], members[depth - 1], atol=1e-3)  # exits differ


def test_member_kind_and_exit_must_agree(tmp_path: Path) -> None:
    save_bundle(tmp_path / "a", [MLP(F, 3)], member_keys=[{"exit": 0}], classes=[0, 1, 2],
                feature_names=NAMES, selected=0, member_meta=[{"output": 0}])
    with pytest.raises(ModelFileError, match="no NumPy forward"):
        NumpyModel.from_dir(tmp_path / "a")  # an exit index on a plain MLP
    save_bundle(tmp_path / "b", [MultiExitMLP(F, 3)], member_keys=[{"exit": 0}],
                classes=[0, 1, 2], feature_names=NAMES, selected=0)
    with pytest.raises(ModelFileError, match="no NumPy forward"):
        NumpyModel.from_dir(tmp_path / "b")  # a multi-exit network without its exit
    save_bundle(tmp_path / "c", [MultiExitMLP(F, 3, hidden=(8, 8))], member_keys=[{"exit": 5}],
                classes=[0, 1, 2], feature_names=NAMES, selected=0,
                member_meta=[{"output": 5}])
    with pytest.raises(ModelFileError, match=r"exit 5 is outside the network's exits 0..1"):
        NumpyModel.from_dir(tmp_path / "c")


def test_numpy_path_never_imports_torch(tmp_path: Path) -> None:
    _save(tmp_path / "m", [MLP(F, 3)], _scaler())
    code = (
        "import sys, numpy as np\n"
        "from selfdistill.serving.numpy_runtime import NumpyModel\n"
        f"m = NumpyModel.from_dir({str(tmp_path / 'm')!r})\n"
        "p = m.predict_proba_one(np.zeros(6))\n"
        "assert abs(p.sum() - 1) < 1e-9\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_latest_features_equal_the_full_history_row(candles: pd.DataFrame) -> None:
    cfg = FeaturesConfig()
    names = feature_names(cfg)
    full = compute_features(candles, cfg).to_numpy()[-1]
    got = latest_features(candles, cfg.model_dump(mode="json"), names)
    np.testing.assert_allclose(got, full, rtol=1e-9, atol=1e-12)
    with pytest.raises(DataError, match="incomplete"):
        latest_features(candles.iloc[:10], cfg.model_dump(mode="json"), names)


def test_the_old_import_path_is_an_alias_of_the_runtime() -> None:
    from selfdistill import inference
    from selfdistill.serving import numpy_runtime

    assert inference.__all__ == numpy_runtime.__all__
    for name in numpy_runtime.__all__:
        assert getattr(inference, name) is getattr(numpy_runtime, name)
