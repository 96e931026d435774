"""Bayesian tuning of the learning rate on a task measure, SPEC §8 (seed 002 §5.E.1; issue #9).

**Objective: the task, nothing the knobs can inflate.** The seed maximises mean ``total_reward``;
that sum is linear in the SIE weights the seed also tunes, so the optimiser learned to inflate
whichever internal term was positive, whatever the task (issue #9: the tuner alone took a learning
network to chance). Here a window's score is the mean *external* reward
(``result.components["external"]``) over the cycles that carry one: on a labelled stream that is
``+1`` right / ``-1`` wrong, i.e. ``2 x prequential accuracy - 1`` (predict, then learn); on a
rewarded stream the reward given. No tuned value enters it. **Without a task signal nothing is
tuned**: windows wait for ``window_task_cycles`` cycles that carry one (the internal SIE terms are
not a criterion a tuner may maximise; the configured values stay).

**Search space** (default: ``eta`` only): the ``eta`` knob, the live learning rate that scales all
learning, in ``[eta0 / eta_range, eta0 x eta_range]`` (log-uniform), ``eta0`` the configured
``learning.eta``, or ``[eta_min, eta_max]`` when both are set. ``gamma`` (trace carried to the
next input) only with ``tune_gamma = true`` in ``[gamma_min, gamma_max]`` (the seed's
``[0.9, 0.98]`` hands each input's reward to the next inputs, which are other classes on an i.i.d.
stream); the four SIE weights only with ``tune_sie_weights = true`` (they no longer drive the
readout's learning when a label or reward arrives).

**Paired trials, incumbent kept unless beaten** (the network keeps learning, so a score measured
later is higher whatever the knobs do; a sequential comparison credits a candidate with that
trend). A session alternates windows of the *incumbent* (``BASE``) and of a *candidate*
(``TRIAL``)::

    BASE_0, C_1, BASE_1, C_2, BASE_2, ...,  each window = settle_cycles + window_task_cycles scored

Candidate ``C_i`` is compared with the pooled flanking windows ``BASE_{i-1}`` and ``BASE_i`` (an
A-B-A design: a linear trend cancels)::

    d_i  = mean(C_i) - mean(BASE_{i-1} u BASE_i)
    se_i = sqrt(var(C_i) / n_C + var(BASE) / n_BASE)
    accept C_i as the new incumbent  iff  d_i > max(accept_margin, accept_z x se_i)

(each window with one +1 and one -1 pseudo-observation added, Agresti & Caffo 2000; ``compare``)

The optimiser is told ``y_i = -d_i`` (the incumbent itself is told ``y = 0``). An accepted
candidate becomes the incumbent and a new GP session starts from it (earlier ``d`` were measured
against the old one). A rejected candidate's knobs are reverted at once (the ``BASE_i`` window runs
the incumbent). So the engine only ever keeps a point that beat the one before it, by a margin
that accuracy noise crosses with probability ~2 % (``accept_z = 2``), and every candidate window
is followed by the incumbent. A candidate window that does not collect ``window_task_cycles``
scored cycles within ``max_window_cycles`` is abandoned (incumbent restored). Tuning starts after
``warmup_cycles`` cycles (the steep first part of the learning curve is concave, where an A-B-A
comparison still favours the middle window), and after ``n_trials`` candidates the incumbent is
held for ``rest_cycles`` before the next session.

**A trust region around the incumbent** (TuRBO, Eriksson et al. 2019): candidates are proposed
inside ``trust_bounds(bounds, incumbent, radius)``, the configured range shrunk around the
incumbent to ``radius`` times its half-width (in log space for a log-uniform knob). A candidate
that scored below the incumbent (``d <= 0``) multiplies ``radius`` by ``trust_shrink`` (floor
``trust_min``), an accepted one by ``trust_grow`` (cap 1); a better but not significantly better
one leaves it. A candidate window costs the task in proportion to the candidate's distance from
a good incumbent (issue #9 measured ~0.01 of accuracy on streams whose configured ``eta`` was
already near the best); with the region shrinking after each worse candidate, a tuner that keeps
finding nothing better explores ever closer to what works, while one that finds better points
keeps a wide region (in the spirit of the one-fifth success rule of evolution strategies,
Rechenberg 1973). ``radius`` is checkpointed and survives sessions.

**Exploration backs off while the incumbent keeps winning.** A session ends after ``n_trials``
candidates without an accepted one (an accepted one starts a new session), and the incumbent is
then held for ``rest_length``: ``rest_cycles x rest_growth^(k - 1)`` after ``k`` such sessions in
a row, at most ``rest_max_cycles``; an accepted candidate resets ``k``. With the defaults a daemon
whose rate is already right runs candidates ~25 % of the time at first (10 candidate windows of
110 cycles per session of ~2,300 cycles plus a 2,000-cycle rest), and ~3 % once the rest reaches
its 32,000-cycle cap (after five sessions, ~40,000 inputs): the
cost of exploring (a third of a point of accuracy on digits, measured) is paid less and less often,
while a drift that makes a candidate win restores the full cadence. ``k`` is checkpointed.

The optimiser (``propose``) is a pure function of (search space, seed, trials): a fresh
``skopt.Optimizer`` (Gaussian process with a Matern-5/2 ARD kernel plus white noise, expected
improvement) is built, told every trial of the session and asked once, so ``compute`` holds no
mutable optimiser, a restart that restores the trials continues exactly, and the seed (derived
from ``network.seed`` and the job's name, ``base.job_seed``; the engine's generator is never
touched) is all the randomness there is.

**Sharing the ``eta`` knob with the criticality job**: that job scales the learning rate by a
factor in ``[eta_min_scale, 1]`` on rate variance (``criticality.eta_scale``). The tuner sets
``eta = point x scale`` and reads the live point as ``eta / scale`` (the registry wires
``eta_scale_source``), so neither job undoes the other. The tuner never assigns the engine's
attributes: ``apply`` returns the new ``Knobs`` (fumd/knobs.py), made live by the runner.

Live values outside their range (another job or an operator moved them, or a checkpoint holds a
bad value) revert to the incumbent at the next run (seed §5.E.1 "revert to validated default
settings").
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch

from .base import Applied, job_seed
from .config import SIE_WEIGHTS, Bound, TuningConfig  # noqa: F401 - the [jobs.tuning] section, defined in config.py (light to import)
from .state import Counters, Custom, FloatRows, Floats, OptionalFloats, Persist, PersistentJob, Scalar, Strings

if TYPE_CHECKING:
    from ..config import EngineConfig
    from ..engine import CycleResult, Engine
    from ..knobs import Knobs

NAME = "tuning"
ALL_PARAMS = ("eta", "gamma") + SIE_WEIGHTS
STATE_FORMAT = 2  # checkpoints of the seed-objective tuner (format 1) start a fresh tuner


# ---------------------------------------------------------------------------------------------
# the tuned values: knobs of the engine (fumd/knobs.py)
class Tunables(Protocol):
    names: tuple[str, ...]

    def get(self, knobs: Knobs) -> dict[str, float]: ...

    def set(self, knobs: Knobs, values: Mapping[str, float]) -> Knobs: ...

    def defaults(self, config: EngineConfig) -> dict[str, float]: ...


class EngineTunables:
    """The knobs ``eta`` (divided by the criticality job's ``eta_scale``), ``gamma`` and
    ``w_td / w_novelty / w_habituation / w_self_benefit``; defaults from the configured
    ``learning`` / ``sie`` sections."""

    def __init__(self, names: Sequence[str] = ("eta",), eta_scale_source: Callable[[], float] | None = None):
        unknown = [n for n in names if n not in ALL_PARAMS]
        if unknown:
            raise KeyError(unknown[0])
        self.names = tuple(names)
        self.eta_scale_source = eta_scale_source

    def _scale(self) -> float:
        s = float(self.eta_scale_source()) if self.eta_scale_source is not None else 1.0
        return s if math.isfinite(s) and s > 0 else 1.0

    def get(self, knobs: Knobs) -> dict[str, float]:
        out = {name: float(getattr(knobs, name)) for name in self.names}
        if "eta" in out:
            out["eta"] /= self._scale()
        return out

    def set(self, knobs: Knobs, values: Mapping[str, float]) -> Knobs:
        """``knobs`` with ``values`` (``eta`` given as the tuner's point: times the scale)."""
        unknown = [n for n in values if n not in ALL_PARAMS]
        if unknown:
            raise KeyError(unknown[0])
        return knobs.replace(**{n: float(v) * self._scale() if n == "eta" else float(v) for n, v in values.items()})

    def defaults(self, cfg: EngineConfig) -> dict[str, float]:
        out = {}
        for name in self.names:
            out[name] = float(getattr(cfg.learning,
                                      name)) if name in ("eta", "gamma") else float(getattr(cfg.sie, name))
        return out


# ---------------------------------------------------------------------------------------------
# pure functions
@dataclass
class WindowStats:
    """Scored cycles of one window: count, sum, sum of squares (external reward)."""

    n: int = 0
    s: float = 0.0
    ss: float = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        self.s += value
        self.ss += value * value

    def merged(self, other: "WindowStats") -> "WindowStats":
        return WindowStats(self.n + other.n, self.s + other.s, self.ss + other.ss)

    @property
    def mean(self) -> float:
        return self.s / self.n if self.n else math.nan

    @property
    def var(self) -> float:
        """Unbiased sample variance (0 for fewer than 2 values)."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.ss - self.s * self.s / self.n) / (self.n - 1))

    def as_list(self) -> list[float]:
        return [float(self.n), self.s, self.ss]

    @classmethod
    def from_list(cls, v: Sequence[float]) -> "WindowStats":
        return cls(int(v[0]), float(v[1]), float(v[2])) if len(v) == 3 else cls()


def task_score(result: CycleResult) -> float | None:
    """The task signal of one cycle: its external reward (``+1``/``-1`` for a right/wrong labelled
    decision, the record's reward otherwise); None for a cycle without label or reward."""
    components = getattr(result, "components", None) or {}
    r = components.get("external")
    if r is None:
        correct = getattr(result, "correct", None)
        if correct is None:
            return None
        r = 1.0 if correct else -1.0
    r = float(r)
    return r if math.isfinite(r) else None


PSEUDO = WindowStats(2, 0.0, 2.0)  # one +1 and one -1 observation


def compare(candidate: WindowStats, base: WindowStats, margin: float, z: float) -> tuple[float, float, bool]:
    """``(d, se, accept)``: ``d = mean(candidate) - mean(base)``, ``se`` its standard error,
    accept iff ``d > max(margin, z x se)``. Each window first gets one ``+1`` and one ``-1``
    pseudo-observation (for +-1 rewards this is Agresti & Caffo's 2000 "add one success and one
    failure to each group"): near 100 % accuracy a window without a single error has sample
    variance 0, and the plain Wald test then calls 0 errors in 100 against 4 in 200 a
    significant improvement (it is not: 0 errors in 100 has P = 0.13 at a 2 % error rate)."""
    c, b = candidate.merged(PSEUDO), base.merged(PSEUDO)
    d = c.mean - b.mean
    se = math.sqrt(c.var / c.n + b.var / b.n)
    return d, se, bool(math.isfinite(d) and d > max(margin, z * se))


def revert_out_of_range(values: Mapping[str, float], bounds: Sequence[Bound],
                        defaults: Mapping[str, float]) -> dict[str, float]:
    """The parameters whose live value is outside ``[low, high]`` (or not finite), mapped to their
    default (seed §5.E.1 "if parameters drift outside these ranges ... revert to validated default
    settings"). A default outside the range is clipped into it."""
    out = {}
    for name, low, high, *_ in bounds:
        v = values[name]
        if not (math.isfinite(v) and low * (1 - 1e-9) <= v <= high * (1 + 1e-9)):
            out[name] = min(max(defaults[name], low), high)
    return out


def rest_length(config: TuningConfig, fruitless: int) -> int:
    """Cycles the incumbent is held between sessions: ``rest_cycles x rest_growth^(k - 1)`` after
    ``k >= 1`` sessions in a row that accepted nothing, at most ``rest_max_cycles`` (exploration
    backs off while the incumbent keeps winning; one accepted candidate resets ``k``)."""
    if fruitless <= 1 or config.rest_growth <= 1.0:
        return config.rest_cycles
    grown = config.rest_cycles * config.rest_growth ** min(fruitless - 1, 64)
    return int(min(max(config.rest_max_cycles, config.rest_cycles), grown))


def trust_bounds(bounds: Sequence[Bound], center: Sequence[float], radius: float) -> list[Bound]:
    """``bounds`` shrunk around ``center`` to ``radius`` (0-1] times each range's half-width, in
    log space for a log-uniform prior, and cut to the range: ``[c / e^h, c x e^h]`` with
    ``h = radius x (log high - log low) / 2``, or ``[c - h, c + h]`` with
    ``h = radius x (high - low) / 2``. ``radius = 1`` centred in the range gives the range."""
    out: list[Bound] = []
    for (name, low, high, *rest), c in zip(bounds, center, strict=True):
        prior = rest[0] if rest else "uniform"
        c = min(max(float(c), low), high)
        if prior == "log-uniform" and low > 0:
            h = radius * (math.log(high) - math.log(low)) / 2.0
            lo, hi = max(low, c * math.exp(-h)), min(high, c * math.exp(h))
        else:
            h = radius * (high - low) / 2.0
            lo, hi = max(low, c - h), min(high, c + h)
        out.append((name, lo, hi, prior))
    return out


def inside(x: Sequence[float], bounds: Sequence[Bound]) -> bool:
    return all(b[1] * (1 - 1e-9) <= v <= b[2] * (1 + 1e-9) for v, b in zip(x, bounds, strict=True))


def propose(bounds: Sequence[Bound], xs: Sequence[Sequence[float]], ys: Sequence[float],
            seed: int, n_initial_points: int = 4, acq_func: str = "EI", acq_optimizer: str = "lbfgs") -> list[float]:
    """Next point of a GP Bayesian optimisation, a pure function of its arguments.

    A fresh ``skopt.Optimizer(base_estimator="GP")`` (Matern-5/2 ARD kernel x constant + white
    noise, hyperparameters by marginal likelihood) with a Latin-hypercube initial design of
    ``n_initial_points`` drawn from ``seed`` is told all trials ``(xs, ys)`` and asked once: the
    first answers are the design's points in order, later ones maximise the acquisition, e.g.
    expected improvement ``EI(x) = E[max(y_best - f(x) - xi, 0)]`` under the GP posterior ``f``.
    The acquisition's random restarts use a stream derived from ``(seed, len(xs))`` so they differ
    between trials but not between runs. BLAS is limited to one thread (same numbers on any
    machine load, and no oversubscription of the loop's cores).
    """
    from skopt import Optimizer
    from skopt.sampler import Lhs
    from skopt.space import Real
    from threadpoolctl import threadpool_limits

    dims = [Real(b[1], b[2], prior=(b[3] if len(b) > 3 else "uniform"), name=b[0]) for b in bounds]
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "objective evaluated at this point before": skopt handles it
        opt = Optimizer(dims, base_estimator="GP", acq_func=acq_func, acq_optimizer=acq_optimizer,
                        n_initial_points=n_initial_points, initial_point_generator=Lhs(criterion=None),
                        random_state=int(seed))
        opt.rng = np.random.RandomState((int(seed) * 1_000_003 + len(xs)) % (2**32 - 1))
        if len(xs):
            opt.tell([[min(max(float(v), b[1]), b[2]) for v, b in zip(x, bounds, strict=False)] for x in xs],
                     [float(y) for y in ys])
        x = opt.ask()
    return [min(max(float(v), b[1]), b[2]) for v, b in zip(x, bounds, strict=False)]


# ---------------------------------------------------------------------------------------------
# the job
WARMUP, BASE, TRIAL, REST = 0, 1, 2, 3
PHASES = {WARMUP: "warmup", BASE: "base", TRIAL: "trial", REST: "rest"}


@dataclass
class TuningSnapshot:
    phase: int
    live: dict[str, float]
    defaults: dict[str, float]
    incumbent: list[float] | None
    xs: list[list[float]]
    ys: list[float]
    window: WindowStats
    prev_base: WindowStats
    pending: list[float] | None  # candidate awaiting its second flanking base window
    pending_stats: WindowStats
    cycles_in_phase: int
    cycles_total: int
    trials_in_session: int
    seed: int
    session: int
    bounds: list[Bound]
    radius: float = 1.0
    fruitless: int = 0  # sessions in a row that ended without an accepted candidate


@dataclass
class TuningPlan:
    revert: dict[str, float]
    next_phase: int | None = None  # None: stay in the phase, keep counting
    set_point: list[float] | None = None  # knobs to make live
    incumbent: list[float] | None = None  # new incumbent (first use or accepted candidate)
    told: tuple[list[float], float] | None = None  # (candidate, -d) to tell the GP
    new_session: bool = False
    pending: list[float] | None = None  # the candidate whose window just finished
    pending_stats: WindowStats | None = None
    prev_base: WindowStats | None = None
    radius: float | None = None  # the trust region's new radius
    fruitless: int | None = None  # the new count of fruitless sessions in a row
    decision: dict[str, float] = field(default_factory=dict)


def _bounds_stored(job: TuningJob, bounds: list[Bound]) -> torch.Tensor:
    return torch.tensor([[b[1], b[2]] for b in bounds], dtype=torch.float64).reshape(-1, 2)


def _bounds_loaded(job: TuningJob, stored: Any) -> list[Bound]:
    """The saved ranges with the tuned names and the configured priors ([] if none were saved)."""
    priors = [b[3] for b in job.config.bounds(1.0, job.tunables.names)]
    ranges = torch.as_tensor(stored).to(torch.float64).cpu().tolist()
    return [(n, float(lo), float(hi), p) for n, (lo, hi), p in zip(job.tunables.names, ranges, priors, strict=False)]


WINDOW = Custom(lambda job, w: torch.tensor(w.as_list(), dtype=torch.float64),
                lambda job, stored: WindowStats.from_list(torch.as_tensor(stored).tolist()))


class TuningJob(PersistentJob):
    """A saved state of another ``format`` or for other tuned names is ignored: the tuner starts
    fresh (the configured values are live until the warm-up ends)."""

    name = NAME
    state_format = STATE_FORMAT
    STATE = (
        Persist("state_format", Scalar(int), key="format", check=True),
        Persist("tuned_names", Strings(), key="names", check=True),
        *(Persist(attr, Scalar(int)) for attr in ("seed", "session", "phase")),
        Persist("bounds", Custom(_bounds_stored, _bounds_loaded)),
        Persist("incumbent", OptionalFloats()),
        Persist("xs", FloatRows(lambda job: len(job.tunables.names))), Persist("ys", Floats()),
        Persist("window", WINDOW), Persist("prev_base", WINDOW), Persist("pending", OptionalFloats()),
        Persist("pending_stats", WINDOW), Persist("radius", Scalar(float)), Persist("fruitless", Scalar(int)),
        *(Persist(attr, Scalar(int)) for attr in ("cycles_in_phase", "cycles_total", "trials_in_session")),
        Persist("counts", Counters("count_{}", int)), Persist("last", Counters("last_{}", float)),
    )

    def __init__(self, config: TuningConfig | None = None, tunables: Tunables | None = None,
                 eta_scale_source: Callable[[], float] | None = None, seed: int = 0):
        self.config = config or TuningConfig()
        self.config.validate()
        self.tunables = tunables or EngineTunables(self.config.names(), eta_scale_source)
        self.bounds: list[Bound] = []  # fixed at first use from the engine's configured eta
        self.base_seed = job_seed(seed, NAME) % (2**31 - 1)
        self.seed = -1  # set at first use (base_seed)
        self._reset()

    def _reset(self) -> None:
        self.session = 0
        self.phase = WARMUP
        self.incumbent: list[float] | None = None
        self.xs: list[list[float]] = []
        self.ys: list[float] = []
        self.window = WindowStats()
        self.prev_base = WindowStats()
        self.pending: list[float] | None = None
        self.pending_stats = WindowStats()
        self.cycles_in_phase = 0
        self.cycles_total = 0
        self.trials_in_session = 0
        self.radius = 1.0
        self.fruitless = 0
        self.counts = {"accepted": 0, "rejected": 0, "abandoned": 0, "reverts": 0}
        self.last = {"d": math.nan, "se": math.nan, "incumbent_score": math.nan, "candidate_score": math.nan}

    # -- per cycle --------------------------------------------------------------------------
    @property
    def tuned_names(self) -> list[str]:
        return list(self.tunables.names)

    def observe(self, engine: Engine, result: CycleResult) -> None:
        self.cycles_total += 1
        self.cycles_in_phase += 1
        if self.phase in (BASE, TRIAL) and self.cycles_in_phase > self.config.settle_cycles:
            score = task_score(result)
            if score is not None:
                self.window.add(score)

    # -- snapshot -> compute -> apply ---------------------------------------------------------
    def snapshot(self, engine: Engine) -> TuningSnapshot:
        if self.seed < 0:
            self.seed = self.base_seed
        if not self.bounds:
            eta0 = float(engine.config.learning.eta)
            self.bounds = self.config.bounds(eta0, self.tunables.names)
        return TuningSnapshot(
            phase=self.phase, live=self.tunables.get(engine.knobs), defaults=self.tunables.defaults(engine.config),
            incumbent=list(self.incumbent) if self.incumbent else None,
            xs=[list(x) for x in self.xs], ys=list(self.ys), window=WindowStats(**vars(self.window)),
            prev_base=WindowStats(**vars(self.prev_base)), pending=list(self.pending) if self.pending else None,
            pending_stats=WindowStats(**vars(self.pending_stats)), cycles_in_phase=self.cycles_in_phase,
            cycles_total=self.cycles_total, trials_in_session=self.trials_in_session, seed=self.seed,
            session=self.session, bounds=list(self.bounds), radius=self.radius, fruitless=self.fruitless,
        )

    def _propose(self, snap: TuningSnapshot, incumbent: list[float], xs: list[list[float]],
                 ys: list[float], radius: float) -> list[float]:
        """The session's next candidate, inside the trust region around ``incumbent``: the GP is
        told the incumbent at ``y = 0`` first (the anchor every ``d`` is measured against), then
        the session's candidates that lie in the region."""
        c = self.config
        region = trust_bounds(snap.bounds, incumbent, radius)
        told = [(x, y) for x, y in zip(xs, ys, strict=True) if inside(x, region)]
        return propose(region, [incumbent] + [x for x, _ in told], [0.0] + [y for _, y in told],
                       snap.seed + 7919 * snap.session, c.n_initial_points + 1, c.acq_func,
                       c.acq_optimizer)

    def compute(self, snap: TuningSnapshot) -> TuningPlan:
        c = self.config
        names = [b[0] for b in snap.bounds]
        incumbent_d = dict(zip(names, snap.incumbent, strict=False)) if snap.incumbent else dict(snap.defaults)
        plan = TuningPlan(revert=revert_out_of_range(snap.live, snap.bounds, incumbent_d))
        full = snap.window.n >= c.window_task_cycles
        if snap.phase == WARMUP:
            if snap.cycles_total >= c.warmup_cycles:  # start: the live (configured) values are the incumbent
                live = {**snap.live, **plan.revert}
                plan.incumbent = [live[n] for n in names]
                plan.next_phase, plan.new_session = BASE, True
        elif snap.phase == BASE and full:
            base = snap.window
            if snap.pending is not None:  # decide the candidate between two base windows
                pooled = snap.prev_base.merged(base)
                d, se, accept = compare(snap.pending_stats, pooled, c.accept_margin, c.accept_z)
                plan.decision = {"d": d, "se": se, "accepted": float(accept), "incumbent_score": pooled.mean,
                                 "candidate_score": snap.pending_stats.mean}
                plan.told = (snap.pending, -d)
                # worse than the incumbent: the region holds bad points, shrink it; better but
                # not significantly: inconclusive, keep it
                radius = snap.radius * (c.trust_grow if accept else c.trust_shrink if d <= 0 else 1.0)
                plan.radius = min(1.0, max(c.trust_min, radius))
                if accept:
                    plan.fruitless = 0
                    plan.incumbent = list(snap.pending)
                    plan.set_point = list(snap.pending)
                    plan.new_session = True  # earlier d's were against the old incumbent
                    plan.next_phase = BASE
                    plan.prev_base = WindowStats()
                    return plan
            else:
                plan.decision = {"incumbent_score": base.mean}
            trials = snap.trials_in_session + (1 if snap.pending is not None else 0)
            if trials >= c.n_trials:  # (an accepted candidate starts a new session: this one found nothing)
                plan.next_phase = REST
                plan.fruitless = snap.fruitless + 1
            else:
                xs = snap.xs + ([snap.pending] if snap.pending is not None else [])
                ys = snap.ys + ([plan.told[1]] if plan.told is not None else [])
                radius = snap.radius if plan.radius is None else plan.radius  # the region after this decision
                plan.pending = self._propose(snap, [incumbent_d[n] for n in names], xs, ys, radius)
                plan.set_point = plan.pending
                plan.next_phase = TRIAL
            plan.prev_base = base
        elif snap.phase == TRIAL:
            if full:
                plan.pending_stats = snap.window
                plan.set_point = list(snap.incumbent) if snap.incumbent else None
                plan.next_phase = BASE
            elif snap.cycles_in_phase >= c.max_window_cycles:  # no task signal: give up on the candidate
                plan.decision = {"abandoned": 1.0}
                plan.set_point = list(snap.incumbent) if snap.incumbent else None
                plan.next_phase = BASE
        elif snap.phase == REST and snap.cycles_in_phase >= rest_length(c, snap.fruitless):
            plan.next_phase, plan.new_session = BASE, True
        return plan  # always a plan: every run reports the phase and counters (metrics, log)

    def apply(self, engine: Engine, plan: TuningPlan | None) -> Applied:
        names = list(self.tunables.names)
        knobs = engine.knobs
        reverted = 0
        if plan is not None:
            if plan.revert:
                knobs = self.tunables.set(knobs, plan.revert)
                reverted = len(plan.revert)
                self.counts["reverts"] += reverted
            if plan.told is not None:
                self.xs.append(list(plan.told[0]))
                self.ys.append(float(plan.told[1]))
                self.trials_in_session += 1
                self.pending = None
                self.pending_stats = WindowStats()
            if plan.decision:
                self.last.update({k: v for k, v in plan.decision.items() if k in self.last})
                if "accepted" in plan.decision:
                    self.counts["accepted" if plan.decision["accepted"] else "rejected"] += 1
                if plan.decision.get("abandoned"):
                    self.counts["abandoned"] += 1
                    self.pending = None
                    self.pending_stats = WindowStats()
            if plan.incumbent is not None:
                self.incumbent = list(plan.incumbent)
            if plan.radius is not None:
                self.radius = plan.radius
            if plan.fruitless is not None:
                self.fruitless = plan.fruitless
            if plan.new_session:
                if self.phase != WARMUP:
                    self.session += 1
                self.xs, self.ys, self.trials_in_session = [], [], 0
                self.prev_base = WindowStats()
            if plan.prev_base is not None and not plan.new_session:
                self.prev_base = WindowStats(**vars(plan.prev_base))
            if plan.pending is not None:
                self.pending = list(plan.pending)
            if plan.pending_stats is not None:
                self.pending_stats = WindowStats(**vars(plan.pending_stats))
            if plan.set_point is not None:
                knobs = self.tunables.set(knobs, dict(zip(names, plan.set_point, strict=False)))
            if plan.next_phase is not None:
                self.phase = plan.next_phase
                self.window = WindowStats()
                self.cycles_in_phase = 0
        out = {
            "session": float(self.session), "phase": float(self.phase), "trial": float(self.trials_in_session),
            "resting": float(self.phase == REST), "task_cycles": float(self.window.n),
            "accepted_total": float(self.counts["accepted"]), "rejected_total": float(self.counts["rejected"]),
            "abandoned_total": float(self.counts["abandoned"]), "last_d": self.last["d"], "last_se": self.last["se"],
            "incumbent_score": self.last["incumbent_score"], "candidate_score": self.last["candidate_score"],
            "reverted": float(reverted), "reverts_total": float(self.counts["reverts"]),
            "trust_radius": self.radius, "rest_cycles": float(rest_length(self.config, self.fruitless)),
        }
        out.update({f"param_{k}": v for k, v in self.tunables.get(knobs).items()})
        if self.incumbent:
            out.update({f"incumbent_{k}": float(v) for k, v in zip(names, self.incumbent, strict=False)})
        return Applied(out, knobs)

    def reset_state(self) -> None:
        self._reset()
        self.bounds = []
        self.seed = -1


__all__ = ["TuningConfig", "TuningJob", "Tunables", "EngineTunables", "WindowStats", "propose", "compare",
           "trust_bounds",
           "task_score", "revert_out_of_range", "ALL_PARAMS", "SIE_WEIGHTS"]
