"""Bayesian tuning of the sensitive learning parameters, SPEC §8 (seed 002 §5.E.1).

Search space (seed §5.E.1): ``eta in [0.005, 0.02]`` (reward-modulated STDP rate), ``gamma in
[0.9, 0.98]`` (eligibility-trace decay), the four SIE weights ``w_td, w_novelty, w_habituation,
w_self_benefit in [0.5, 2.0]``. Objective (minimised): ``-mean(total_reward)`` over a trial window.

The optimisation runs *live*, ask/tell: a trial sets a point on the engine, runs for
``settle_cycles + window_cycles`` cycles (``observe`` sums ``total_reward`` of the last
``window_cycles``; the first ``settle_cycles`` are skipped because the SIE smooths its reward over
the last 5 inputs), then the job's run tells the optimiser the objective, asks the next point and
applies it. After ``n_trials`` trials (one *session*) the best point found is applied and held for
``rest_cycles`` cycles; then a new session starts (the network has changed, old objectives are
stale), its first trial being the incumbent best.

The optimiser (``propose``) is a pure function of (search space, seed, trials): a fresh
``skopt.Optimizer`` (Gaussian process with a Matern-5/2 ARD kernel plus white noise, expected
improvement) is built, told every trial of the session and asked once. So ``compute`` holds no
mutable optimiser, a restart that restores the trials continues exactly, and the seed (drawn once
from ``engine.generator``) is all the randomness there is.

Live values outside their range (another job or an operator moved them, or a checkpoint holds a
bad value) revert to the configured defaults at the next run (seed §5.E.1 "revert to validated
default settings").
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import torch

from ..errors import ConfigError

NAME = "tuning"
SIE_WEIGHTS = ("w_td", "w_novelty", "w_habituation", "w_self_benefit")
PARAMS = ("eta", "gamma") + SIE_WEIGHTS


# ---------------------------------------------------------------------------------------------
# configuration
@dataclass(frozen=True)
class TuningConfig:
    enabled: bool = True
    every_seconds: float = 5.0  # wall-clock polling; a trial only switches once its window is full
    every_cycles: int = 25  # = settle_cycles + window_cycles: the run is the trial switch
    window_cycles: int = 20  # seed §5.E.1: objective over ~1,000 timesteps = 20 cycles of T = 50
    settle_cycles: int = 5  # skipped after a switch (the SIE smooths total_reward over 5 inputs)
    n_trials: int = 50  # per session (seed: "e.g., 50 trials")
    n_initial_points: int = 10  # Latin-hypercube points before the GP takes over
    rest_cycles: int = 200  # best point held this long between sessions (seed: every 10,000 timesteps)
    acq_func: str = "EI"
    acq_optimizer: str = "lbfgs"
    eta_min: float = 0.005
    eta_max: float = 0.02
    gamma_min: float = 0.9
    gamma_max: float = 0.98
    sie_weight_min: float = 0.5
    sie_weight_max: float = 2.0

    def bounds(self, names: Sequence[str] = PARAMS) -> list[tuple[str, float, float]]:
        table = {"eta": (self.eta_min, self.eta_max), "gamma": (self.gamma_min, self.gamma_max)}
        table.update({w: (self.sie_weight_min, self.sie_weight_max) for w in SIE_WEIGHTS})
        return [(n, *table[n]) for n in names]

    def validate(self) -> None:
        ranges: dict[str, tuple[float, float]] = {
            "every_seconds": (0.0, 1e7), "every_cycles": (1, 10**9), "window_cycles": (1, 10**7),
            "settle_cycles": (0, 10**7), "n_trials": (1, 10_000), "n_initial_points": (1, 10_000),
            "rest_cycles": (0, 10**9), "eta_min": (0.0, 1.0), "eta_max": (0.0, 1.0), "gamma_min": (0.0, 1.0),
            "gamma_max": (0.0, 1.0), "sie_weight_min": (0.0, 10.0), "sie_weight_max": (0.0, 10.0),
        }
        for key, (low, high) in ranges.items():
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                raise ConfigError(f"jobs.{NAME}.{key} = {value!r} is outside the allowed range [{low}, {high}]")
        for low, high in (("eta_min", "eta_max"), ("gamma_min", "gamma_max"), ("sie_weight_min", "sie_weight_max")):
            if not getattr(self, low) < getattr(self, high):
                raise ConfigError(f"jobs.{NAME}.{low} must be < jobs.{NAME}.{high}")
        if self.acq_func not in ("EI", "PI", "LCB", "gp_hedge"):
            raise ConfigError(f"jobs.{NAME}.acq_func = {self.acq_func!r}: allowed values are EI, PI, LCB, gp_hedge")
        if self.acq_optimizer not in ("lbfgs", "sampling"):
            raise ConfigError(f"jobs.{NAME}.acq_optimizer = {self.acq_optimizer!r}: allowed values are lbfgs, sampling")


# ---------------------------------------------------------------------------------------------
# where the tuned values live: the one place that knows the engine's attributes
class Tunables(Protocol):
    names: tuple[str, ...]

    def get(self, engine: Any) -> dict[str, float]: ...

    def set(self, engine: Any, values: Mapping[str, float]) -> None: ...

    def defaults(self, engine: Any) -> dict[str, float]: ...


class EngineTunables:
    """``engine.eta``, ``engine.gamma`` and ``engine.sie.w_td / w_novelty / w_habituation /
    w_self_benefit`` (live values); defaults from ``engine.config.learning`` / ``engine.config.sie``."""

    names = PARAMS

    def get(self, engine: Any) -> dict[str, float]:
        out = {"eta": float(engine.eta), "gamma": float(engine.gamma)}
        out.update({w: float(getattr(engine.sie, w)) for w in SIE_WEIGHTS})
        return out

    def set(self, engine: Any, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            if name in ("eta", "gamma"):
                setattr(engine, name, float(value))
            elif name in SIE_WEIGHTS:
                setattr(engine.sie, name, float(value))
            else:
                raise KeyError(name)

    def defaults(self, engine: Any) -> dict[str, float]:
        cfg = engine.config
        out = {"eta": float(cfg.learning.eta), "gamma": float(cfg.learning.gamma)}
        out.update({w: float(getattr(cfg.sie, w)) for w in SIE_WEIGHTS})
        return out


# ---------------------------------------------------------------------------------------------
# pure functions
def objective(rewards_sum: float, count: int) -> float:
    """Minimised objective of a trial: ``-mean(total_reward)`` over its window (seed §5.E.1
    "maximize average SIE reward over a window")."""
    return -rewards_sum / count


def revert_out_of_range(values: Mapping[str, float], bounds: Sequence[tuple[str, float, float]],
                        defaults: Mapping[str, float]) -> dict[str, float]:
    """The parameters whose live value is outside ``[low, high]`` (or not finite), mapped to their
    default (seed §5.E.1 "if parameters drift outside these ranges ... revert to validated default
    settings"). A default outside the range is clipped into it."""
    out = {}
    for name, low, high in bounds:
        v = values[name]
        if not (math.isfinite(v) and low <= v <= high):
            out[name] = min(max(defaults[name], low), high)
    return out


def propose(bounds: Sequence[tuple[str, float, float]], xs: Sequence[Sequence[float]], ys: Sequence[float],
            seed: int, n_initial_points: int = 10, acq_func: str = "EI", acq_optimizer: str = "lbfgs") -> list[float]:
    """Next point of a GP Bayesian optimisation, a pure function of its arguments.

    A fresh ``skopt.Optimizer(base_estimator="GP")`` (Matern-5/2 ARD kernel x constant + white
    noise, hyperparameters by marginal likelihood) with a Latin-hypercube initial design of
    ``n_initial_points`` drawn from ``seed`` is told all trials ``(xs, ys)`` and asked once: the
    first ``n_initial_points`` answers are the design's points in order, later ones maximise the
    acquisition, e.g. expected improvement ``EI(x) = E[max(y_best - f(x) - xi, 0)]`` under the GP
    posterior ``f``. The acquisition's random restarts use a stream derived from ``(seed, len(xs))``
    so they differ between trials but not between runs. BLAS is limited to one thread (same
    numbers on any machine load, and no oversubscription of the loop's cores).
    """
    from skopt import Optimizer
    from skopt.sampler import Lhs
    from skopt.space import Real
    from threadpoolctl import threadpool_limits

    dims = [Real(low, high, name=name) for name, low, high in bounds]
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "objective evaluated at this point before": skopt handles it
        opt = Optimizer(dims, base_estimator="GP", acq_func=acq_func, acq_optimizer=acq_optimizer,
                        n_initial_points=n_initial_points, initial_point_generator=Lhs(criterion=None),
                        random_state=int(seed))
        opt.rng = np.random.RandomState((int(seed) * 1_000_003 + len(xs)) % (2**32 - 1))
        if len(xs):
            opt.tell([list(map(float, x)) for x in xs], [float(y) for y in ys])
        x = opt.ask()
    return [min(max(float(v), low), high) for v, (_, low, high) in zip(x, bounds)]


# ---------------------------------------------------------------------------------------------
# the job
TRIAL, REST = 0, 1


@dataclass
class TuningSnapshot:
    phase: int
    live: dict[str, float]
    defaults: dict[str, float]
    xs: list[list[float]]
    ys: list[float]
    current: list[float] | None
    best: list[float] | None
    reward_sum: float
    reward_count: int
    cycles_in_phase: int
    seed: int


@dataclass
class TuningPlan:
    revert: dict[str, float]
    told: tuple[list[float], float] | None = None  # the finished trial (point, objective)
    next_point: list[float] | None = None  # the point to run next (trial or best)
    next_phase: int = TRIAL
    new_session: bool = False


class TuningJob:
    name = NAME

    def __init__(self, config: TuningConfig | None = None, tunables: Tunables | None = None):
        self.config = config or TuningConfig()
        self.config.validate()
        self.tunables = tunables or EngineTunables()
        self.bounds = self.config.bounds(self.tunables.names)
        self.seed = -1  # drawn from engine.generator at first use
        self.session = 0
        self.phase = TRIAL
        self.xs: list[list[float]] = []
        self.ys: list[float] = []
        self.current: list[float] | None = None
        self.best_x: list[float] | None = None
        self.best_y = math.nan
        self.last_objective = math.nan
        self.reward_sum = 0.0
        self.reward_count = 0
        self.cycles_in_phase = 0
        self.reverts = 0

    # -- per cycle --------------------------------------------------------------------------
    def observe(self, engine: Any, result: Any) -> None:
        if self.phase == TRIAL and self.current is None:
            return
        self.cycles_in_phase += 1
        r = float(result.total_reward)
        if self.phase == TRIAL and self.cycles_in_phase > self.config.settle_cycles and math.isfinite(r):
            self.reward_sum += r
            self.reward_count += 1

    # -- snapshot -> compute -> apply ---------------------------------------------------------
    def snapshot(self, engine: Any) -> TuningSnapshot:
        if self.seed < 0:
            self.seed = int(torch.randint(0, 2**31 - 1, (1,), generator=engine.generator))
        return TuningSnapshot(
            phase=self.phase, live=self.tunables.get(engine), defaults=self.tunables.defaults(engine),
            xs=[list(x) for x in self.xs], ys=list(self.ys), current=list(self.current) if self.current else None,
            best=list(self.best_x) if self.best_x else None, reward_sum=self.reward_sum,
            reward_count=self.reward_count, cycles_in_phase=self.cycles_in_phase, seed=self.seed,
        )

    def _propose(self, xs: list[list[float]], ys: list[float], seed: int) -> list[float]:
        c = self.config
        return propose(self.bounds, xs, ys, seed, c.n_initial_points, c.acq_func, c.acq_optimizer)

    def compute(self, snap: TuningSnapshot) -> TuningPlan | None:
        c = self.config
        plan = TuningPlan(revert=revert_out_of_range(snap.live, self.bounds, snap.defaults))
        if snap.phase == TRIAL:
            if snap.current is None:  # first use: start the session
                plan.next_point = self._propose(snap.xs, snap.ys, snap.seed)
            elif snap.reward_count >= c.window_cycles:
                y = objective(snap.reward_sum, snap.reward_count)
                xs, ys = snap.xs + [snap.current], snap.ys + [y]
                plan.told = (snap.current, y)
                if len(xs) >= c.n_trials:  # budget spent: hold the best
                    plan.next_point, plan.next_phase = list(xs[int(np.argmin(ys))]), REST
                else:
                    plan.next_point = self._propose(xs, ys, snap.seed)
        elif snap.cycles_in_phase >= c.rest_cycles:  # next session, warm-started at the incumbent
            plan.new_session = True
            plan.next_point = list(snap.best) if snap.best else self._propose([], [], snap.seed)
        if not plan.revert and plan.next_point is None:
            return None
        return plan

    def apply(self, engine: Any, plan: TuningPlan | None) -> dict[str, float]:
        if plan is not None:
            if plan.revert:
                self.tunables.set(engine, plan.revert)
                self.reverts += len(plan.revert)
            if plan.told is not None:
                x, y = plan.told
                self.xs.append(list(x))
                self.ys.append(float(y))
                self.last_objective = float(y)
                if not (y >= self.best_y):  # also true while best_y is nan
                    self.best_x, self.best_y = list(x), float(y)
            if plan.new_session:
                self.session += 1
                self.xs, self.ys = [], []
                self.best_y = math.nan  # the incumbent is re-measured as the session's first trial
            if plan.next_point is not None:
                self.phase = plan.next_phase
                self.current = list(plan.next_point) if plan.next_phase == TRIAL else None
                self.tunables.set(engine, dict(zip(self.tunables.names, plan.next_point)))
                self.reward_sum, self.reward_count, self.cycles_in_phase = 0.0, 0, 0
        out = {
            "session": float(self.session), "trial": float(len(self.xs)), "resting": float(self.phase == REST),
            "last_objective": self.last_objective, "best_objective": self.best_y,
            "reverted": float(len(plan.revert)) if plan is not None else 0.0, "reverts_total": float(self.reverts),
        }
        out.update({f"param_{k}": v for k, v in self.tunables.get(engine).items()})
        return out

    # -- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        d = len(self.tunables.names)
        return {
            "names": list(self.tunables.names), "seed": int(self.seed), "session": int(self.session),
            "phase": int(self.phase),
            "xs": torch.tensor(self.xs, dtype=torch.float64).reshape(-1, d),
            "ys": torch.tensor(self.ys, dtype=torch.float64),
            "current": torch.tensor(self.current or [], dtype=torch.float64),
            "best_x": torch.tensor(self.best_x or [], dtype=torch.float64),
            "best_y": float(self.best_y), "last_objective": float(self.last_objective),
            "reward_sum": float(self.reward_sum), "reward_count": int(self.reward_count),
            "cycles_in_phase": int(self.cycles_in_phase), "reverts": int(self.reverts),
        }

    def load_state_dict(self, data: Mapping[str, Any]) -> None:
        if not data:  # a checkpoint from before this job was enabled: start fresh
            return
        names = list(data["names"])
        if names != list(self.tunables.names):
            raise ValueError(f"tuning state is for parameters {names}, this job tunes {list(self.tunables.names)}")
        self.seed, self.session, self.phase = int(data["seed"]), int(data["session"]), int(data["phase"])
        xs = data["xs"].to(torch.float64).cpu()
        ys = data["ys"].to(torch.float64).cpu()
        # trials outside the (possibly changed) search space are dropped, not told
        keep = [i for i in range(xs.shape[0]) if all(lo <= float(v) <= hi for v, (_, lo, hi) in zip(xs[i], self.bounds))]
        self.xs = [xs[i].tolist() for i in keep]
        self.ys = [float(ys[i]) for i in keep]
        cur = data["current"].to(torch.float64).cpu().tolist()
        self.current = cur if cur else None
        best = data["best_x"].to(torch.float64).cpu().tolist()
        self.best_x = best if best else None
        self.best_y = float(data["best_y"])
        self.last_objective = float(data["last_objective"])
        self.reward_sum, self.reward_count = float(data["reward_sum"]), int(data["reward_count"])
        self.cycles_in_phase, self.reverts = int(data["cycles_in_phase"]), int(data["reverts"])


__all__ = ["TuningConfig", "TuningJob", "Tunables", "EngineTunables", "propose", "objective",
           "revert_out_of_range", "PARAMS", "SIE_WEIGHTS"]
