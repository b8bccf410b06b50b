"""Search instead of a grid: a config's ``sweep.space`` sampled trial by trial by an Optuna study.

``sweep.search: random`` draws every trial independently; ``tpe`` (Optuna's tree-structured Parzen
estimator) draws its first trials at random, then where the results so far say the objective is
good. Both are seeded by the config's ``seed``, and the sweep asks for its trials in rounds (as many
as it trains at once) and reports a round's results in trial order before it asks the next: the
same config then gives the same trials, however the children's training overlapped in time.

Pure config work and the study (no Prefect, no MLflow): the sweep flow trains the points. Each
trial is a GridPoint like a grid's, its index the trial's number, its config validated before it
trains. The study lives in this process's memory: the sweep that asks is the one that is told.

Pruning (``sweep.prune``, network trials): each trial reports its per-epoch ``val_accuracy`` and is
stopped once the pruner says it falls behind. The pruner sees only the trials of earlier rounds
(and the trial itself): Optuna's successive-halving pruner would otherwise compare a trial with
the others of its round as far as they happen to have got, and the same config could prune
differently from one run to the next.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from bpcore.config.models import Config
from bpcore.config.sweep import Range
from bpcore.search.grid import GridPoint, base_config, make_point, objective, short_names
from bpcore.search.space import PRUNED_ON, check, choice_key, resolved, significant


def startup_trials(trials: int) -> int:
    """TPE's random trials before it models the results: a third of the trials, at least 2 and at most 10
    (Optuna's default of 10 would leave a 12-trial search almost random)."""
    return min(10, max(2, trials // 3))


class Search:
    """The study of one sweep: ``ask`` the next points, ``tell`` each one's score (None: it did not finish)."""

    def __init__(self, config: Config, source: str = "config", stable: float | None = None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep logs its children itself
        sweep = config.sweep
        self.source, self.trials = source, sweep.trials
        _, goal = objective(config, source)
        check(config, source, stable)
        if sweep.search == "random":
            sampler = optuna.samplers.RandomSampler(seed=config.seed)
        else:
            sampler = optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=startup_trials(sweep.trials))
        self.pruner = _earlier_rounds(_pruner(sweep.prune)) if sweep.prune != "none" else None
        self.prune = sweep.prune
        self.study = optuna.create_study(direction=goal, sampler=sampler, pruner=self.pruner)
        self.keys = list(sweep.space)
        self.names = short_names(self.keys)
        self.choices: dict[str, dict[str, Any]] = {}  # a choice's text (what Optuna holds) -> its value
        self.distributions = {key: self._distribution(key, span, stable) for key, span in sweep.space.items()}
        self.base = base_config(config)
        self.asked: dict[int, Any] = {}  # trial number -> Optuna's trial, until told

    def _distribution(self, key: str, span: Range, stable: float | None):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if span.choice is not None:  # Optuna holds each choice as its exact JSON text: 0.1 and 0.1000001 stay two
            self.choices[key] = {choice_key(v): v for v in span.choice}
            return CategoricalDistribution(list(self.choices[key]))
        low, high = resolved(key, span, stable, self.source)
        if span.int_ is not None:
            return IntDistribution(int(low), int(high))
        return FloatDistribution(float(low), float(high), log=span.log_uniform is not None)

    @property
    def remaining(self) -> int:
        """Trials not asked yet."""
        return self.trials - len(self.study.trials)

    def ask(self, n: int) -> list[GridPoint]:
        """The next ``n`` trials (fewer when the search has fewer left), as validated points."""
        points, first = [], len(self.study.trials)
        for _ in range(min(n, self.remaining)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna warns of experimental options it uses itself
                trial = self.study.ask(self.distributions)
            self.asked[trial.number] = trial
            if self.pruner is not None:
                self.pruner.rounds[trial.number] = first
            points.append(self._point(trial.number, trial.params))
        return points

    def report(self, point: GridPoint, epoch: int, value: float) -> str | None:
        """An asked point's ``PRUNED_ON`` at the end of ``epoch``: why it stops here (pruned), or None.

        Safe from the threads that train the round's points at once.
        """
        if self.pruner is None or not math.isfinite(value):
            return None
        trial = self.asked[point.index]
        trial.report(value, epoch)
        return _pruned(epoch, self.prune, value) if trial.should_prune() else None

    def earlier(self, point: GridPoint) -> list[dict[str, Any]]:
        """The trials of the rounds before ``point``'s, as plain values: all a pruner elsewhere needs to decide on
        the point as this study would (``Judge``)."""
        from optuna.distributions import distribution_to_json

        first = self.pruner.rounds[point.index]
        return [{"state": t.state.name, "value": t.value, "params": t.params,
                 "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
                 "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
                 "system_attrs": t.system_attrs} for t in self.study.get_trials(deepcopy=False) if t.number < first]

    def replay(self, point: GridPoint, values: list[float]) -> None:
        """Report the epochs a point trained elsewhere (its ``PRUNED_ON`` by epoch, from 1) as it reported them
        there, up to where it was pruned: the study then holds what it would had the point trained here."""
        for epoch, value in enumerate(values, start=1):
            if self.report(point, epoch, value):
                return

    def tell(self, point: GridPoint, score: float | None, status: str = "finished") -> None:
        """The result of an asked point: its score and status. A pruned point is a pruned trial; so is one that
        diverged: Optuna's samplers leave failed trials out, and TPE would go on drawing where the runs blow up,
        while a pruned trial with no epoch reported ranks below every other. A point that failed otherwise, or
        finished without a score, is a failed trial."""
        from optuna.trial import TrialState

        trial = self.asked.pop(point.index)
        if status in ("pruned", "diverged"):
            self.study.tell(trial, state=TrialState.PRUNED)
        elif status != "finished" or score is None or not math.isfinite(score):
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, score)

    def _point(self, number: int, params: dict[str, Any]) -> GridPoint:
        chosen = {key: self.choices[key][params[key]] if key in self.choices else
                  significant(params[key], self.distributions[key]) for key in self.keys}
        return make_point(number, self.base, chosen, self.names, self.source, "sweep.space",
                          f"sweep.space trial {number}:")


class Judge:
    """A search's pruner away from its study (where the point trains): a study of the trials of the rounds before
    the point's (``Search.earlier``) and the point's own trial, deciding as the sweep's study would (its pruner
    compares ``PRUNED_ON``, whatever the study's direction)."""

    def __init__(self, prune: str, earlier: list[dict[str, Any]]):
        import optuna
        from optuna.distributions import json_to_distribution
        from optuna.trial import TrialState

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.prune, self.pruner = prune, _earlier_rounds(_pruner(prune))
        self.study = optuna.create_study(direction="maximize", pruner=self.pruner)
        self.study.add_trials([optuna.trial.create_trial(
            state=TrialState[t["state"]], value=t["value"], params=t["params"],
            distributions={k: json_to_distribution(d) for k, d in t["distributions"].items()},
            intermediate_values={int(k): v for k, v in t["intermediate_values"].items()},
            system_attrs=t["system_attrs"]) for t in earlier])
        self.trial = self.study.ask()
        self.pruner.rounds[self.trial.number] = len(earlier)

    def __call__(self, epoch: int, figures: dict[str, float]) -> str | None:
        """Why the trial is pruned after ``epoch`` (its ``PRUNED_ON`` among ``figures``), or None."""
        value = figures.get(PRUNED_ON)
        if value is None or not math.isfinite(value):
            return None
        self.trial.report(value, epoch)
        return _pruned(epoch, self.prune, value) if self.trial.should_prune() else None


def _pruned(epoch: int, prune: str, value: float) -> str:
    return f"pruned at epoch {epoch} by the {prune} pruner: {PRUNED_ON} {value:.4g} behind earlier trials"


def _pruner(kind: str):
    """Optuna's pruner for ``sweep.prune``: from the first epoch, once two earlier trials give a median (its
    default waits for five, most of a 12-trial search); successive halving from rung 1 at a third kept."""
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


def _earlier_rounds(inner):
    """A pruner that decides on a trial as ``inner`` would, seeing only the trials asked in earlier rounds and
    the trial itself. Its ``rounds``: trial number -> the number of its round's first trial (``Search.ask``)."""
    from optuna.pruners import BasePruner

    class EarlierRounds(BasePruner):
        def __init__(self):
            self.inner, self.rounds = inner, {}

        def prune(self, study, trial) -> bool:
            first = self.rounds.get(trial.number, trial.number)
            return self.inner.prune(_StudyView(study, first, trial.number), trial)

    return EarlierRounds()


class _StudyView:
    """A study whose ``get_trials`` lists the trials numbered below ``first``, and ``own``; the rest is the study's,
    but for its direction: the pruner compares ``PRUNED_ON`` (higher is better), whatever the sweep's metric and goal
    (a sweep minimising final_cost would otherwise prune its most accurate trials)."""

    def __init__(self, study, first: int, own: int):
        self._study, self._first, self._own = study, first, own

    @property
    def direction(self):
        from optuna.study import StudyDirection

        return StudyDirection.MAXIMIZE

    @property
    def directions(self):
        return [self.direction]

    def get_trials(self, deepcopy: bool = True, states=None):
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                if t.number < self._first or t.number == self._own]

    def __getattr__(self, name: str):
        return getattr(self._study, name)


