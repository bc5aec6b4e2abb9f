"""Temporal encoders, the window classifier, and the self-supervised heads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from selfdistill.config import ModelConfig
from selfdistill.modelio.weights import load_model, save_model
from selfdistill.nn.encoders import (
    GRUEncoder,
    TCNEncoder,
    WindowClassifier,
    build_encoder,
    window_classifier_from_spec,
)
from selfdistill.nn.heads import DINOHead, MLPHead, MultiHead
from selfdistill.nn.registry import build_model, model_from_spec
from selfdistill.nn.windows import make_windows

F_, W_ = 5, 16


def _x(b: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, F_, W_, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["cnn", "gru"])
def test_encoder_maps_windows_to_embeddings(kind: str) -> None:
    torch.manual_seed(0)
    enc = build_encoder(kind, F_, hidden=[12, 8])
    z = enc(_x())
    assert z.shape == (4, 8)
    assert enc.dim == 8


def test_tcn_time_steps_never_see_later_bars() -> None:
    torch.manual_seed(0)
    enc = TCNEncoder(F_, hidden=[6, 6, 6], kernel_size=3)
    x = _x()
    h = enc.blocks(x)  # (B, D, W)
    x2 = x.clone()
    x2[:, :, 10:] += 5.0  # change bars 10.. of the window
    h2 = enc.blocks(x2)
    assert torch.allclose(h[:, :, :10], h2[:, :, :10])
    assert not torch.allclose(h[:, :, 10:], h2[:, :, 10:])


@pytest.mark.parametrize("kind", ["cnn", "gru"])
def test_embedding_depends_on_the_latest_bar(kind: str) -> None:
    torch.manual_seed(0)
    enc = build_encoder(kind, F_, hidden=[8])
    x = _x()
    x2 = x.clone()
    x2[:, :, -1] += 1.0
    assert not torch.allclose(enc(x), enc(x2))


def test_gru_embedding_is_its_last_hidden_state() -> None:
    torch.manual_seed(0)
    enc = GRUEncoder(F_, hidden=[7])
    x = _x()
    out, h_n = enc.layers[0](x.transpose(1, 2))
    assert torch.allclose(enc(x), h_n[0])
    assert torch.allclose(enc(x), out[:, -1])


@pytest.mark.parametrize("kind", ["cnn", "gru"])
def test_classifier_logits_and_spec_round_trip(kind: str) -> None:
    torch.manual_seed(0)
    model = WindowClassifier(F_, 3, kind=kind, window=W_, hidden=[8, 8], dropout=0.0)
    x = _x()
    assert model(x).shape == (4, 3)
    assert model.embed(x).shape == (4, 8)
    spec = model.spec()
    assert spec["kind"] == kind
    assert spec["window"] == W_
    rebuilt = model_from_spec(spec)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt(x), model(x))


@pytest.mark.parametrize("kind", ["cnn", "gru"])
def test_factory_builds_from_the_model_config_section(kind: str) -> None:
    cfg = ModelConfig(kind=kind, hidden=[16, 8], window=W_, dropout=0.0)  # type: ignore[arg-type]
    model = build_model(cfg, n_features=F_, n_classes=3)
    assert isinstance(model, WindowClassifier)
    assert model.spec()["hidden"] == [16, 8]
    assert model(_x()).shape == (4, 3)


def test_model_file_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = window_classifier_from_spec({"kind": "cnn", "n_features": F_, "n_classes": 3,
                                         "hidden": [8]})
    save_model(model, tmp_path / "m", {"note": "test"})
    loaded, meta = load_model(tmp_path / "m")
    assert meta["spec"]["kind"] == "cnn"
    assert torch.equal(loaded(_x()), model.eval()(_x()))


def test_classifier_consumes_strided_window_views() -> None:
    torch.manual_seed(0)
    x = torch.randn(50, F_)
    windows = make_windows(x, W_)
    model = WindowClassifier(F_, 3, hidden=[8])
    rows = torch.tensor([0, 20, 49])
    assert model(windows[rows]).shape == (3, 3)


def test_flat_rows_are_rejected_with_a_hint() -> None:
    model = WindowClassifier(F_, 3, hidden=[8])
    with pytest.raises(ValueError, match="make_windows"):
        model(torch.randn(4, F_))


@pytest.mark.parametrize("bad", [{"kind": "lstm"}, {"activation": "swish"}])
def test_bad_options_list_valid_ones(bad: dict[str, str]) -> None:
    args = {"kind": "cnn", "activation": "relu"} | bad
    with pytest.raises(ValueError, match="not one of"):
        WindowClassifier(F_, 3, hidden=[8], kind=args["kind"], activation=args["activation"])


def test_heads_shapes_and_dino_scores_are_cosines() -> None:
    torch.manual_seed(0)
    z = torch.randn(6, 8)
    assert MLPHead(8, 4, hidden=16, norm="batch")(z).shape == (6, 4)
    dino = DINOHead(8, prototypes=10, hidden=16, bottleneck=5)
    scores = dino(z).detach()
    assert scores.shape == (6, 10)
    assert float(scores.abs().max()) <= 1.0 + 1e-5
    multi = MultiHead(lambda h: MLPHead(8, 3, hidden=4), heads=3)
    outs = multi(z)
    assert len(outs) == len(multi) == 3
    assert not torch.allclose(outs[0], outs[1])  # independent heads


def test_head_options_are_checked() -> None:
    with pytest.raises(ValueError, match="layer, batch, none"):
        MLPHead(8, 4, norm="group")
    with pytest.raises(ValueError, match="head"):
        MultiHead(lambda h: MLPHead(8, 3), heads=0)
