"""Does EMA-teacher pretraining help? Linear probes and fine-tuning with few labels.

For each fraction of the labelled training rows (a seeded random subset; the
pretraining itself saw every training window, unlabelled) arms are trained on the
same subset, stopped early on the validation rows, and scored once on the test rows:

- ``probe_random``: a randomly initialised encoder, frozen, plus a linear head;
- ``scratch``: the same classifier trained from random weights (supervised only);
- for every pretrained encoder (one per objective and per kept encoder, e.g.
  ``byol/student`` and ``byol/teacher``):
  ``probe_pretrained``: that encoder, frozen, plus a linear head; and
  ``finetune_pretrained``: that encoder and a head, all trained.

The probes train on embeddings computed once (eval mode), so they cost little.
:func:`summarise` turns per-seed records into the table: test accuracy with its
interval and the paired difference against ``scratch`` (or ``probe_random`` for the
probes), both per-bar tests on the test period with verdicts from p-values adjusted
as one family.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfdistill.config import RunConfig
from selfdistill.evaluation.metrics import classification_metrics
from selfdistill.evaluation.statistics import (
    TestResult,
    adjust_pvalues,
    mean_difference_test,
    verdict_of,
)
from selfdistill.methods.common import derive_seed
from selfdistill.nn.encoders import WindowClassifier
from selfdistill.training.loop import (
    Callback,
    FitSettings,
    fit,
    make_optimizer,
    predict_logits,
    probabilities,
)

__all__ = ["ARMS", "CompareData", "compare_arms", "label_subset", "summarise"]

log = logging.getLogger(__name__)

ARMS = ("probe_pretrained", "probe_random", "finetune_pretrained", "scratch")
#: the arm each arm is compared with in the table
REFERENCE_ARM = {"probe_pretrained": "probe_random", "finetune_pretrained": "scratch"}
#: the name of a lone pretrained encoder passed as a module
DEFAULT_NAME = "pretrained"
SCORES = ("accuracy", "balanced_accuracy", "macro_f1", "nll")
MIN_LABELS = 32

ProbaFn = Callable[[Tensor], np.ndarray]


@dataclass
class CompareData:
    """Every row's window and label, and the chronological, purged row sets.

    Attributes:
        x: (N, F, W) windows (strided views) of all rows.
        y: (N,) int64 labels.
        train_rows / val_rows / test_rows: int64 row indices.
        truth: (N,) true regimes (synthetic market) or None.
    """

    x: Tensor
    y: Tensor
    train_rows: Tensor
    val_rows: Tensor
    test_rows: Tensor
    truth: np.ndarray | None = None
    n_classes: int = 3


def label_subset(rows: Tensor, fraction: float, *, seed: int) -> Tensor:
    """A sorted random ``fraction`` of ``rows`` (at least 32, at most all of them)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    k = min(len(rows), max(MIN_LABELS, round(fraction * len(rows))))
    if k == len(rows):
        return rows
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(rows), generator=g)[:k].sort().values
    return rows[pick.to(rows.device)]


def _ce(y: Tensor) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    def loss_fn(model: nn.Module, xb: Tensor, rows: Tensor) -> Tensor:
        return F.cross_entropy(model(xb), y[rows])

    return loss_fn


def _fit(model: nn.Module, x: Tensor, data: CompareData, rows: Tensor, cfg: RunConfig, *,
         seed: int, label: str, callbacks: Sequence[Callback]) -> int:
    tr = cfg.training
    opt = make_optimizer(model, kind=tr.optimizer, lr=tr.lr, weight_decay=tr.weight_decay)
    settings = FitSettings.from_config(tr, label=label, patience=max(tr.patience, 1))
    result = fit(model, x=x, y=data.y, train_rows=rows, val_rows=data.val_rows,
                 loss_fn=_ce(data.y), optimizer=opt, generator=torch.Generator().manual_seed(seed),
                 settings=settings, callbacks=callbacks)
    return result.epochs_run


@torch.no_grad()
def _embed(encoder: nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """(N, D) embeddings of every window, encoder in eval mode."""
    encoder.eval()
    return torch.cat([encoder(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def _softmax_fn(model: nn.Module, x: Tensor) -> ProbaFn:
    return lambda rows: probabilities(predict_logits(model, x, rows))


def _probe(encoder: nn.Module, data: CompareData, rows: Tensor, cfg: RunConfig, *, seed: int,
           label: str, callbacks: Sequence[Callback], emb: Tensor | None = None
           ) -> tuple[ProbaFn, int]:
    """A linear head on frozen embeddings (``emb``: the encoder's, computed before)."""
    emb = _embed(encoder, data.x) if emb is None else emb  # (N, D)
    torch.manual_seed(seed)
    head = nn.Linear(emb.shape[1], data.n_classes).to(emb.device)
    epochs = _fit(head, emb, data, rows, cfg, seed=seed, label=label, callbacks=callbacks)
    return _softmax_fn(head, emb), epochs


def _classifier(cfg: RunConfig, data: CompareData, seed: int) -> WindowClassifier:
    torch.manual_seed(seed)
    m = cfg.model
    return WindowClassifier(data.x.shape[1], data.n_classes, kind=m.kind, window=data.x.shape[2],
                            hidden=m.hidden, activation=m.activation, dropout=m.dropout)


def _run_arm(arm: str, pretrained: nn.Module | None, data: CompareData, rows: Tensor,
             cfg: RunConfig, *, seed: int, callbacks: Sequence[Callback],
             emb: Tensor | None = None) -> tuple[ProbaFn, int]:
    label = f"ema_teacher compare {arm} ({len(rows)} labels)"
    model = _classifier(cfg, data, seed).to(data.x.device)  # same init for every arm
    if pretrained is not None:
        model.encoder.load_state_dict(pretrained.state_dict())
    if arm.startswith("probe"):
        return _probe(model.encoder, data, rows, cfg, seed=seed, label=label,
                      callbacks=callbacks, emb=emb)
    epochs = _fit(model, data.x, data, rows, cfg, seed=seed, label=label, callbacks=callbacks)
    return _softmax_fn(model, data.x), epochs


def _scores(proba_fn: ProbaFn, data: CompareData, split: str) -> dict[str, Any]:
    rows = getattr(data, f"{split}_rows")
    proba = proba_fn(rows)
    idx = rows.cpu().numpy()
    m = classification_metrics(data.y.cpu().numpy()[idx], proba, n_classes=data.n_classes)
    out: dict[str, Any] = {f"{split}_{k}": float(m[k]) for k in SCORES}
    if split == "test":  # per-bar evidence for the paired tests of summarise()
        out["test_correct"] = (proba.argmax(1) == data.y.cpu().numpy()[idx]).astype(int).tolist()
    if data.truth is not None:
        out[f"{split}_accuracy_true"] = float((proba.argmax(1) == data.truth[idx]).mean())
    return out


def _record(arm: str, name: str | None, encoder: nn.Module | None, data: CompareData,
            rows: Tensor, cfg: RunConfig, *, seed: int, fraction: float,
            callbacks: Sequence[Callback], cache: dict[str, Tensor]) -> dict[str, Any]:
    """Train and score one arm; ``seed`` is the run's (the arm's own is derived from it).

    A frozen pretrained encoder embeds every window once: ``cache`` keeps its
    embeddings by name for the probes at the other label fractions.
    """
    t0 = time.perf_counter()
    emb = None
    if arm == "probe_pretrained" and name is not None and encoder is not None:
        emb = cache[name] = cache[name] if name in cache else _embed(encoder, data.x)
    proba_fn, epochs = _run_arm(arm, encoder, data, rows, cfg, emb=emb,
                                seed=derive_seed(seed, "compare", fraction), callbacks=callbacks)
    rec: dict[str, Any] = {"seed": seed, "fraction": float(fraction), "arm": arm,
                           "pretrained": name, "n_labels": len(rows), "epochs": epochs}
    rec.update(_scores(proba_fn, data, "val"))
    rec.update(_scores(proba_fn, data, "test"))
    rec["seconds"] = time.perf_counter() - t0
    log.info("fraction %.2f %s %s: test accuracy %.4f", fraction, arm, name or "",
             rec["test_accuracy"])
    return rec


def compare_arms(data: CompareData, pretrained: nn.Module | Mapping[str, nn.Module],
                 cfg: RunConfig, *, seed: int, fractions: Sequence[float],
                 callbacks: Sequence[Callback] = (), finetune: Collection[str] | None = None
                 ) -> list[dict[str, Any]]:
    """Train and score every arm at every label fraction: one record per (fraction, arm, encoder).

    Args:
        data: windows and row sets; test rows are scored once, after training.
        pretrained: the pretrained encoder, or several by name (``byol/student``, ...);
            copied, never modified.
        cfg: run config (``model`` and ``training`` sections).
        seed: seeds the label subsets, initial weights and batches.
        fractions: fractions of the labelled training rows, e.g. (0.05, 0.2, 1.0).
        finetune: the names that get a ``finetune_pretrained`` arm (None: all); every
            name gets a probe, and ``probe_random`` / ``scratch`` run once per fraction.
    """
    encoders = ({DEFAULT_NAME: pretrained} if isinstance(pretrained, nn.Module)
                else dict(pretrained))
    encoders = {name: copy.deepcopy(enc) for name, enc in encoders.items()}
    records: list[dict[str, Any]] = []
    cache: dict[str, Tensor] = {}
    for fraction in fractions:
        rows = label_subset(data.train_rows, fraction, seed=derive_seed(seed, "labels", fraction))
        for arm in ARMS:
            if arm not in REFERENCE_ARM:  # probe_random / scratch: once per fraction
                records.append(_record(arm, None, None, data, rows, cfg, seed=seed,
                                       fraction=fraction, callbacks=callbacks, cache=cache))
                continue
            for name, encoder in encoders.items():
                if arm == "finetune_pretrained" and finetune is not None and name not in finetune:
                    continue
                records.append(_record(arm, name, encoder, data, rows, cfg, seed=seed,
                                       fraction=fraction, callbacks=callbacks, cache=cache))
    return records


def _cells(records: list[dict[str, Any]]) -> list[tuple[float, str, str | None]]:
    """The table's (fraction, arm, pretrained encoder) cells, in record order."""
    seen: dict[tuple[float, str, str | None], None] = {}
    for r in records:
        seen.setdefault((float(r["fraction"]), r["arm"], r.get("pretrained")), None)
    return sorted(seen, key=lambda c: (c[0], ARMS.index(c[1])))


def _correct(records: list[dict[str, Any]], fraction: float, arm: str,
             name: str | None = None) -> np.ndarray:
    """(S, T) per-bar test correctness of one arm (and pretrained encoder), seeds in order."""
    cells = sorted((r for r in records if r["fraction"] == fraction and r["arm"] == arm
                    and r.get("pretrained") == name), key=lambda r: r["seed"])
    return np.array([r["test_correct"] for r in cells], dtype=np.float64).reshape(len(cells), -1)


def summarise(records: list[dict[str, Any]], *, adjust: str = "holm") -> list[dict[str, Any]]:
    """One table row per (fraction, arm, pretrained encoder): test accuracy and the difference.

    Every number is a per-bar test on the one test period (seeds averaged per bar,
    their spread counted as training noise; :mod:`selfdistill.evaluation.statistics`):
    the arm's accuracy with its interval, and its difference against ``probe_random``
    (for ``probe_pretrained``) or ``scratch`` (for ``finetune_pretrained``), whose
    p-values are adjusted together (``adjust``: Holm or BH) before the verdict.
    """
    rows = []
    for fraction, arm, name in _cells(records):
        correct = _correct(records, fraction, arm, name)
        acc = mean_difference_test(correct - 0.5).rescaled(offset=0.5)
        row: dict[str, Any] = {"fraction": fraction, "arm": arm, "pretrained": name,
                               "metric": "test_accuracy", "mean": acc.estimate,
                               "ci_low": acc.ci_low, "ci_high": acc.ci_high,
                               "seeds": correct.shape[0]}
        ref = REFERENCE_ARM.get(arm)
        other = _correct(records, fraction, ref) if ref is not None else None
        if other is not None and other.shape == correct.shape:
            diff = mean_difference_test(correct - other)
            row.update({"versus": ref, "diff": diff.estimate, "diff_low": diff.ci_low,
                        "diff_high": diff.ci_high, "p_value": diff.p_value,
                        "df": diff.df, "reason": diff.reason, "test": diff.method})
        rows.append(row)
    _verdicts([r for r in rows if "versus" in r], adjust)
    return rows


def _verdicts(rows: list[dict[str, Any]], adjust: str) -> None:
    testable = [r for r in rows if r["p_value"] is not None]
    for row, p in zip(testable, adjust_pvalues([r["p_value"] for r in testable], adjust),
                      strict=True):
        row["p_adjusted"] = float(p)
    for row in rows:
        result = TestResult(row["diff"], row["diff_low"], row["diff_high"], row["p_value"],
                            row["df"], 0, 0, 1, row["test"], row["reason"])
        row["p_adjusted"] = row.get("p_adjusted")
        row["adjustment"] = adjust
        row["verdict"] = verdict_of(result, row["p_adjusted"], higher_better=True)
