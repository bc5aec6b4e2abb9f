"""Model files that load but must not be used: non-finite weights or probabilities, and
specs that would allocate far more than their weights hold (issue 13 items 8 and 11)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import torch

from selfdistill.cli import main
from selfdistill.config import FeaturesConfig
from selfdistill.data.files import save_candles
from selfdistill.data.synthetic import generate_market
from selfdistill.errors import ModelFileError
from selfdistill.estimator import SelfDistillClassifier
from selfdistill.features import feature_names
from selfdistill.modelio.bundle import MANIFEST, load_bundle_arrays, load_bundle_models, save_bundle
from selfdistill.modelio.weights import header_elements
from selfdistill.nn.mlp import MLP

FEATURES = FeaturesConfig(return_windows=[1, 4], volatility_windows=[8], ma_windows=[8],
                          volume_window=8, range_window=8, skew_window=8)
NAMES = feature_names(FEATURES)


def _model_dir(path: Path, fill: float | None = None, scale: float = 1.0) -> Path:
    """A servable model directory (feature config + scaler) of one small MLP."""
    torch.manual_seed(0)
    model = MLP(len(NAMES), 3, hidden=(8,), dropout=0.0).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
            if fill is not None:
                p.fill_(fill)
    return save_bundle(path, [model], member_keys=[{}], classes=["bull", "bear", "sideways"],
                       feature_names=NAMES, selected=0, method="baseline",
                       scaler={"kind": "standard", "clip": 10.0, "center": [0.0] * len(NAMES),
                               "scale": [1.0] * len(NAMES)},
                       feature_config=FEATURES.model_dump(mode="json"))


@pytest.fixture(scope="module")
def candle_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("candles") / "c.csv"
    save_candles(generate_market(300, seed=5)[0], path)
    return path


@pytest.mark.parametrize("fill", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path: Path, fill: float) -> None:
    model_dir = _model_dir(tmp_path / "m", fill=fill)
    for load in (load_bundle_models, load_bundle_arrays, SelfDistillClassifier.load):
        with pytest.raises(ModelFileError, match="NaN or infinite values") as info:
            load(model_dir)
        assert "member_0.json" in str(info.value)


def test_predict_refuses_a_nan_model_in_one_line(tmp_path: Path, candle_file: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # issue 13 item 8: predicted "bull" for every bar, exit 0
    model_dir = _model_dir(tmp_path / "m", fill=float("nan"))
    out = tmp_path / "p.csv"
    code = main(["predict", "--model", str(model_dir), "--candles", str(candle_file),
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1
    assert "NaN or infinite" in err[0]
    assert not out.exists()


def test_predict_refuses_non_finite_probabilities(tmp_path: Path, candle_file: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # finite weights so large that float32 logits overflow: probabilities are NaN
    model_dir = _model_dir(tmp_path / "m", scale=1e37)
    out = tmp_path / "p.csv"
    code = main(["predict", "--model", str(model_dir), "--candles", str(candle_file),
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert "non-finite probabilities" in err
    assert "\n" not in err
    assert not out.exists()


def test_a_finite_model_still_predicts(tmp_path: Path, candle_file: Path) -> None:
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(_model_dir(tmp_path / "m")), "--candles",
                 str(candle_file), "--out", str(out)]) == 0
    assert out.is_file()


def _inflate_spec(model_dir: Path, hidden: list[int]) -> None:
    """Edit member_0's spec and re-sign it, as an attacker who edits both files would."""
    member = model_dir / "member_0.json"
    meta = json.loads(member.read_text())
    meta["spec"]["hidden"] = hidden
    member.write_text(json.dumps(meta))
    manifest = json.loads((model_dir / MANIFEST).read_text())
    manifest["members"][0]["sha256"] = hashlib.sha256(member.read_bytes()).hexdigest()
    (model_dir / MANIFEST).write_text(json.dumps(manifest))


def test_a_huge_spec_is_refused_from_the_weights_header_before_allocating(tmp_path: Path
                                                                         ) -> None:
    # issue 13 item 11: 2e8 weights (800 MB) from a file holding ~130 were built first
    model_dir = _model_dir(tmp_path / "m")
    _inflate_spec(model_dir, [20_000, 10_000])
    t0 = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"spec describes 2\d\d,\d{3},\d{3} weights"):
        load_bundle_models(model_dir)
    assert time.perf_counter() - t0 < 2.0


def test_the_header_count_is_read_without_parsing_the_tensors(tmp_path: Path) -> None:
    model_dir = _model_dir(tmp_path / "m")
    data = (model_dir / "member_0.safetensors").read_bytes()
    n_params = sum(p.numel() for p in MLP(len(NAMES), 3, hidden=(8,)).parameters())
    assert header_elements(data) == n_params
    with pytest.raises(ValueError, match="truncated"):
        header_elements(data[:20])
