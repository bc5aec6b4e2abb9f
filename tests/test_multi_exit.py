"""The multi-exit network: every exit from one forward, early exit, spec round trip."""

from __future__ import annotations

import pytest
import torch

from selfdistill.nn.mlp import MLP
from selfdistill.nn.multi_exit import MultiExitMLP, MultiExitOutput
from selfdistill.nn.registry import BUILDERS, model_from_spec

B, F, C = 7, 5, 3


@pytest.fixture
def net() -> MultiExitMLP:
    torch.manual_seed(0)
    return MultiExitMLP(F, C, hidden=(16, 12, 8), bottleneck=6).eval()


def test_forward_returns_every_exit(net: MultiExitMLP) -> None:
    out = net(torch.randn(B, F))
    assert isinstance(out, MultiExitOutput)
    assert net.depth == 3
    assert [tuple(z.shape) for z in out.logits] == [(B, C)] * 3
    # shallow exits: bottleneck features; deepest: the last block's output
    assert [tuple(f.shape) for f in out.features] == [(B, 6), (B, 6), (B, 8)]
    assert not net._forward_hooks
    assert not net._forward_pre_hooks


def test_forward_exit_matches_forward(net: MultiExitMLP) -> None:
    x = torch.randn(B, F)
    out = net(x)
    for i in range(net.depth):
        torch.testing.assert_close(net.forward_exit(x, i), out.logits[i])
    with pytest.raises(IndexError, match=r"outside 0\.\.2"):
        net.forward_exit(x, 3)


def test_deepest_exit_is_the_plain_mlp(net: MultiExitMLP) -> None:
    mlp = MLP(F, C, hidden=(16, 12, 8)).eval()
    linears = [m for m in mlp.body if isinstance(m, torch.nn.Linear)]
    for lin, block in zip(linears, net.blocks, strict=True):
        lin.load_state_dict(block[0].state_dict())
    mlp.head.load_state_dict(net.classifiers[-1].state_dict())
    x = torch.randn(B, F)
    torch.testing.assert_close(net(x).logits[-1], mlp(x))


def test_hint_features_have_the_deepest_width(net: MultiExitMLP) -> None:
    out = net(torch.randn(B, F))
    hints = net.hint_features(out.features)
    assert [tuple(h.shape) for h in hints] == [(B, 8)] * 3
    assert all(isinstance(a, torch.nn.Linear) for a in net.adapters)
    same = MultiExitMLP(F, C, hidden=(8, 8), bottleneck=8)
    assert all(isinstance(a, torch.nn.Identity) for a in same.adapters)


def test_early_exit_thresholds_zero_and_one(net: MultiExitMLP) -> None:
    x = torch.randn(50, F)
    out = net(x)
    logits, where = net.early_exit(x, 0.0)
    assert (where == 0).all()
    torch.testing.assert_close(logits, out.logits[0])
    logits, where = net.early_exit(x, 1.0)  # untrained: no probability is exactly 1
    assert (where == net.depth - 1).all()
    torch.testing.assert_close(logits, out.logits[-1])


def test_early_exit_takes_the_first_confident_exit(net: MultiExitMLP) -> None:
    x = torch.randn(200, F) * 4
    with torch.no_grad():
        out = net(x)
    conf = torch.stack([torch.softmax(z, -1).amax(-1) for z in out.logits])  # (D, B)
    thr = float(conf[0].median())
    logits, where = net.early_exit(x, thr)
    passed = conf[:-1] >= thr
    expected = torch.where(passed.any(0), passed.int().argmax(0), net.depth - 1)
    assert torch.equal(where, expected)
    assert 0 < int((where == 0).sum()) < len(x)  # a real mix of depths
    chosen = torch.stack(out.logits)[where, torch.arange(len(x))]
    torch.testing.assert_close(logits, chosen)


def test_spec_round_trip(net: MultiExitMLP) -> None:
    assert "multi_exit" in BUILDERS
    spec = net.spec()
    assert spec == {"kind": "multi_exit", "n_features": F, "n_classes": C,
                    "hidden": [16, 12, 8], "activation": "relu", "dropout": 0.0,
                    "bottleneck": 6}
    rebuilt = model_from_spec(spec)
    rebuilt.load_state_dict(net.state_dict())
    x = torch.randn(B, F)
    for a, b in zip(rebuilt.eval()(x).logits, net(x).logits, strict=True):
        torch.testing.assert_close(a, b)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="activation 'swish'"):
        MultiExitMLP(F, C, activation="swish")
    with pytest.raises(ValueError, match="at least one block"):
        MultiExitMLP(F, C, hidden=())
