"""``selfdistill tune``: an Optuna study over ``tune.space``, then one honest evaluation.

::

    config -> dataset -> development rows and their folds (objective.search_data)
      -> study (TPE sampler seeded by tune.seed / seed; median pruner across folds)
         trial: sample the space -> validation score fold by fold (pruned when its running
         mean is worse than the median of earlier trials at the same fold)
      -> best trial's parameters -> run_experiment: a normal run directory, the test rows
         read once -> tune.json (search history, importances, the selection warning)

The study lives in ``--storage`` (any Optuna storage URL, e.g. ``sqlite:///tune.db``), so
a killed search resumes where it stopped: ``--trials N`` is the study's total, and only
the missing trials run. ``--workers N`` runs N trial loops at once, each in its own
process (local backend) or Ray task (ray backend), sharing the study through the storage;
so more than one worker needs a storage every worker can reach. Optuna is imported only
when a search runs (``pip install 'selfdistill[tune]'``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from selfdistill.config import RunConfig
from selfdistill.errors import ConfigError, TrainingError
from selfdistill.evaluation.experiment import ExperimentResult, run_experiment
from selfdistill.evaluation.fold import build_dataset, load_candles
from selfdistill.training.callbacks import Callback
from selfdistill.tuning.objective import (
    LOWER_IS_BETTER,
    SearchData,
    search_data,
    tuned_method,
    validation_score,
)
from selfdistill.tuning.space import apply_params, check_space, sample
from selfdistill.tuning.summary import study_summary, write_tune_file

__all__ = ["TuneResult", "import_optuna", "open_study", "optimize", "run_tune"]

log = logging.getLogger(__name__)


@dataclass
class TuneResult:
    """The final run (best parameters, test read once) and what the search found."""

    experiment: ExperimentResult
    summary: dict[str, Any]


def import_optuna() -> ModuleType:
    try:
        import optuna
    except ImportError as exc:
        raise ConfigError("selfdistill tune needs Optuna: pip install 'selfdistill[tune]'"
                          ) from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _identity(cfg: RunConfig) -> dict[str, Any]:
    """What a study is about; a stored study must match it to be resumed."""
    return {"metric": cfg.tune.metric, "method": tuned_method(cfg),
            "space": sorted(cfg.tune.space)}


def open_study(cfg: RunConfig, storage: str | None, study_name: str) -> Any:
    """Create the study, or load it from ``storage`` (checked to search the same thing)."""
    optuna = import_optuna()
    tune = cfg.tune
    seed = tune.seed if tune.seed is not None else cfg.seed
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=tune.startup_trials)
              if tune.pruning else optuna.pruners.NopPruner())
    direction = "minimize" if tune.metric in LOWER_IS_BETTER else "maximize"
    try:
        study = optuna.create_study(storage=storage, study_name=study_name,
                                    direction=direction, load_if_exists=True, pruner=pruner,
                                    sampler=optuna.samplers.TPESampler(seed=seed))
    except (ValueError, ImportError, optuna.exceptions.OptunaError) as exc:
        raise ConfigError(f"--storage '{redact(storage or '')}': {str(exc).splitlines()[0]} "
                          "(e.g. sqlite:///tune.db)") from exc
    except Exception as exc:  # the database driver's errors (SQLAlchemy, ...)
        raise ConfigError(f"cannot open the study storage '{redact(storage or '')}': "
                          f"{str(exc).splitlines()[0]}") from exc
    wanted = _identity(cfg)
    stored = {k: study.user_attrs[k] for k in wanted if k in study.user_attrs}
    if stored and stored != wanted:
        raise ConfigError(f"study '{study_name}' in the storage searches {stored}, not "
                          f"{wanted}; give another --study-name")
    for key, value in wanted.items():
        study.set_user_attr(key, value)
    return study


def _objective(cfg: RunConfig, data: SearchData) -> Any:
    optuna = import_optuna()

    def objective(trial: Any) -> float:
        params = sample(trial, cfg)
        trial.set_user_attr("params", params)  # the config values (lists stay lists)

        def report(k: int, running: float) -> None:
            trial.report(running, step=k)
            if trial.should_prune():
                raise optuna.TrialPruned()

        value, folds = validation_score(data, apply_params(cfg, params), report=report)
        trial.set_user_attr("fold_values", folds)
        return value

    return objective


def _finished(study: Any) -> int:
    states = {"COMPLETE", "PRUNED", "FAIL"}
    return sum(t.state.name in states for t in study.get_trials(deepcopy=False))


def optimize(cfg: RunConfig, data: SearchData, study: Any, trials: int) -> None:
    """Run trials until ``study`` holds ``trials`` finished ones (in this process)."""
    _run_trials(cfg, data, study, trials - _finished(study))


def _run_trials(cfg: RunConfig, data: SearchData, study: Any, n_trials: int) -> None:
    if n_trials > 0:  # a failed fit (NaN loss) fails its trial, not the search
        study.optimize(_objective(cfg, data), n_trials=n_trials, catch=(TrainingError,))


def _optimize_in_worker(cfg: RunConfig, data: SearchData, storage: str | None,
                        study_name: str, n_trials: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _run_trials(cfg, data, open_study(cfg, storage, study_name), n_trials)


def _run_workers(cfg: RunConfig, data: SearchData, study: Any, storage: str | None,
                 trials: int, workers: int) -> None:
    from selfdistill.evaluation.experiment import CELL_THREADS

    if workers <= 1:
        optimize(cfg, data, study, trials)
        return
    if storage is None:
        raise ConfigError(f"--workers {workers} runs trial loops in {workers} processes that "
                          "share the study through a storage: give --storage (e.g. "
                          "sqlite:///tune.db)")
    remaining = max(trials - _finished(study), 0)
    # each loop runs its share: together exactly the missing trials
    shares = [n for i in range(workers)
              if (n := remaining // workers + (i < remaining % workers)) > 0]
    jobs = [(cfg, data, storage, study.study_name, n, CELL_THREADS) for n in shares]
    if not jobs:
        return
    if cfg.evaluation.backend == "ray":
        from selfdistill.evaluation.backends import ray_session

        ray = ray_session(cfg.evaluation.ray_address)
        task = ray.remote(num_cpus=1)(_optimize_in_worker)
        ray.get([task.remote(*job) for job in jobs])
        return
    with ProcessPoolExecutor(len(jobs), mp_context=mp.get_context("spawn")) as pool:
        for future in [pool.submit(_optimize_in_worker, *job) for job in jobs]:
            future.result()


def redact(url: str) -> str:
    """A storage URL without its password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _best_params(study: Any) -> dict[str, Any]:
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not done:
        raise TrainingError("no trial of the search finished (every one was pruned or "
                            "failed); run more --trials or widen tune.space")
    return dict(study.best_trial.user_attrs["params"])


def run_tune(cfg: RunConfig, *, trials: int, storage: str | None = None,
             study_name: str | None = None, workers: int = 1,
             out_dir: str | Path | None = None, overwrite: bool = False,
             callbacks: Sequence[Callback] = ()) -> TuneResult:
    """Search ``tune.space`` on development rows, then evaluate the best point on test once.

    Returns the final run (a normal run directory, with ``tune.json``) and the summary
    of the search written there.
    """
    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    check_space(cfg)
    name = study_name or cfg.name
    candles, truth, interval = load_candles(cfg)
    data = search_data(build_dataset(cfg, candles, truth, interval), cfg)
    study = open_study(cfg, storage, name)  # a bad storage or another study fails here
    _run_workers(cfg, data, study, storage, trials, workers)
    best = _best_params(study)
    log.info("best of %d trials: %s", _finished(study), best)
    final = run_experiment(apply_params(cfg, best), out_dir=out_dir, overwrite=overwrite,
                           callbacks=callbacks)  # the one look at the test rows
    summary = study_summary(study, cfg, data, best=best, storage=redact(storage or ""),
                            study_name=name, final_metrics=final.metrics)
    write_tune_file(final.run_dir, summary)
    return TuneResult(final, summary)
