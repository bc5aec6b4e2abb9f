"""The Ray backend: experiment cells as Ray tasks, on this machine or on a cluster.

``evaluation.backend: ray`` (``--backend ray``) runs each fold x seed cell as a Ray task
instead of in the local process pool (:mod:`selfdistill.evaluation.experiment`); nothing
else changes: a cell computes the same thing from the same dataset, config and seed,
in a fresh process holding :data:`~selfdistill.evaluation.experiment.CELL_THREADS`
torch thread, so metrics.json is the same byte for byte.

* The dataset goes into Ray's object store once (``ray.put``); every task on a node
  reads that node's copy, so it travels once per node, not once per cell.
* At most ``workers`` cells, or as many as the cluster has CPUs, are in flight (bounded
  memory on the driver).
* A cell that fails (an exception, or its worker or node died) is run once more; a cell
  that fails twice is reported by name once the other cells have finished (they are kept
  in the run directory's cell cache, so ``--resume`` redoes only the failed ones).
* The cell that keeps its models writes them into a temporary folder on its node and
  returns the files' bytes; the driver writes them into the run directory, so the
  cluster needs no shared file system.

``evaluation.ray_address``: None starts Ray on this machine (it stays up until the process
exits, so a study's points or a search's trials share it),
``auto`` joins the cluster started here with ``ray start``, ``ray://host:port`` joins a
remote one through Ray Client. Ray itself is imported only here, only when asked for
(``pip install 'selfdistill[ray]'``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from selfdistill.atomic import atomic_write_bytes
from selfdistill.config import RunConfig
from selfdistill.errors import ConfigError, TrainingError
from selfdistill.evaluation.cell import BacktestSettings, Cell, CellResult, run_cell
from selfdistill.evaluation.fold import Dataset

__all__ = ["CellBackend", "cell_name", "import_ray", "ray_cells", "ray_session"]

log = logging.getLogger(__name__)

#: How many times a failed cell is run again before it is reported.
RETRIES = 1


@dataclass(frozen=True)
class CellBackend:
    """Where the cells run (``evaluation.backend``) and whether finished ones are reused."""

    kind: str = "local"
    address: str | None = None  # the Ray cluster (None: start Ray here)
    resume: bool = False


def cell_name(cell: Cell) -> str:
    """How a cell is named to the user: 'fold 1 seed 0'."""
    return f"fold {cell.fold} seed {cell.seed}"


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--backend ray needs Ray: pip install 'selfdistill[ray]' "
                          "(or use --backend local)") from exc
    return ray


def ray_session(address: str | None) -> ModuleType:
    """Ray, connected: joins ``address`` or starts Ray here (kept until the process exits, so
    the next experiment in this process, e.g. a study's next point, reuses it)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at '{address}'" if address else "a local Ray instance"
        raise ConfigError(f"cannot connect to {where}: {str(exc).splitlines()[0]} "
                          "(check --ray-address; 'auto' joins a cluster started with "
                          "`ray start --head` on this machine)") from exc
    return ray


def _ray_cell(ds: Dataset, cell: Cell, cfg: RunConfig, settings: BacktestSettings,
              threads: int) -> tuple[CellResult, dict[str, bytes]]:
    """One cell in a Ray worker; the saved models come back as {relative path: bytes}."""
    import torch

    torch.set_num_threads(threads)
    if not cell.save_models:
        return run_cell(ds, cell, cfg, settings=settings), {}
    with tempfile.TemporaryDirectory(prefix="selfdistill-cell-") as tmp:
        result = run_cell(ds, cell, cfg, settings=settings, run_dir=Path(tmp))
        files = {str(p.relative_to(tmp)): p.read_bytes()
                 for p in sorted(Path(tmp).rglob("*")) if p.is_file()}
    return result, files


def _write_files(run_dir: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        target = (run_dir / relative).resolve()
        if run_dir.resolve() not in target.parents:  # a path from a worker stays inside
            raise TrainingError(f"a Ray worker returned a model file outside the run "
                                f"directory: '{relative}'")
        atomic_write_bytes(target, data)


def _failure(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # RayTaskError keeps the worker's exception
    shown = cause if isinstance(cause, BaseException) else exc
    text = str(shown).strip().splitlines()
    return f"{type(shown).__name__}: {text[-1] if text else ''}".strip()


def ray_cells(ds: Dataset, cells: Sequence[Cell], cfg: RunConfig, settings: BacktestSettings,
              run_dir: Path, *, workers: int, threads: int, address: str | None
              ) -> Iterator[CellResult]:
    """Results as cells finish on Ray; failed cells retried once, then reported by name."""
    if not cells:  # every cell was finished before (a resumed run)
        return
    ray = ray_session(address)
    # the cluster schedules; at least its CPUs' worth of cells in flight
    in_flight = max(workers, int(ray.cluster_resources().get("CPU", 1)))
    yield from _schedule(ray, ds, cells, cfg, settings, run_dir, in_flight, threads)


def _schedule(ray: Any, ds: Dataset, cells: Sequence[Cell], cfg: RunConfig,
              settings: BacktestSettings, run_dir: Path, workers: int, threads: int, *,
              cell_fn: Callable[..., tuple[CellResult, dict[str, bytes]]] = _ray_cell
              ) -> Iterator[CellResult]:
    """Cells as Ray tasks of ``cell_fn`` (``_ray_cell``), at most ``workers`` in flight."""
    task = ray.remote(num_cpus=1, max_retries=0)(cell_fn)  # retries are ours: by name
    ds_ref, cfg_ref = ray.put(ds), ray.put(cfg)  # once; tasks read the node's copy
    queue: list[tuple[Cell, int]] = [(c, 0) for c in reversed(cells)]
    running: dict[Any, tuple[Cell, int]] = {}
    failed: list[str] = []
    while queue or running:
        while queue and len(running) < workers:
            cell, attempt = queue.pop()
            running[task.remote(ds_ref, cell, cfg_ref, settings, threads)] = (cell, attempt)
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            cell, attempt = running.pop(ref)
            try:
                result, files = ray.get(ref)
            except ray.exceptions.RayError as exc:  # RayTaskError too: the cell raised
                if attempt < RETRIES:
                    log.warning("%s failed (%s); running it again", cell_name(cell),
                                _failure(exc))
                    queue.append((cell, attempt + 1))
                else:
                    failed.append(f"{cell_name(cell)} ({_failure(exc)})")
                continue
            _write_files(run_dir, files)
            yield result
    if failed:
        raise TrainingError(f"{len(failed)} of {len(cells)} cells failed twice on Ray: "
                            f"{'; '.join(failed)}")
