"""The CUDA path: skipped on machines without a GPU (run them where one exists)."""

from __future__ import annotations

import pytest
import torch

from selfdistill.config import parse_config
from selfdistill.losses import distillation_loss, fused_distillation_loss, soft_targets
from selfdistill.methods import TrainData, get_method
from selfdistill.training.device import resolve_device

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_auto_device_picks_cuda() -> None:
    assert resolve_device("auto").type == "cuda"


def test_fused_loss_on_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    s, t, y = torch.randn(64, 3), torch.randn(64, 3), torch.randint(0, 3, (64,))
    ref = distillation_loss(s, y, t, alpha=0.3, temperature=2.0)
    got = fused_distillation_loss(s.cuda(), y.cuda(), soft_targets(t.cuda(), temperature=2.0),
                                  alpha=0.3, temperature=2.0)
    assert float(got.cpu()) == pytest.approx(float(ref), rel=1e-5)


def test_born_again_trains_on_cuda() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(800, 5, generator=g)
    y = (x[:, :3] + 0.5 * torch.randn(800, 3, generator=g)).argmax(1)
    dev = torch.device("cuda")
    data = TrainData(x=x.to(dev), y=y.to(dev), train_rows=torch.arange(0, 600, device=dev),
                     val_rows=torch.arange(600, 800, device=dev))
    cfg = parse_config({"model": {"hidden": [16]}, "training": {"epochs": 3},
                        "born_again": {"generations": 1}})
    lineage = get_method("born_again")(data, cfg, seed=0)
    assert next(lineage.members[1].model.parameters()).device.type == "cuda"
    assert lineage.members[1].predict_proba(data.x).shape == (800, 3)
