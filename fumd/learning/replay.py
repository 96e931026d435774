"""Interleaved replay of recent labelled inputs (docs/mechanisms.md "Replay", issue #9 retention).

A network that learns only from the input in front of it forgets classes it stops seeing: while
classes B are trained, the B populations grow onto features that A inputs share and nothing tells
them to stay quiet on A (class-incremental forgetting; measured: LED keeps 0.15 of its accuracy,
digits 0.75). The brain's answer, in the complementary-learning-systems account (McClelland,
McNaughton & O'Reilly 1995), is that a fast store replays recent experience into the slowly
learning cortex, interleaved with new experience; in machine continual learning the same thing is
experience replay, still the strongest simple baseline for class-incremental streams (Rolnick et
al. 2019; van de Ven, Siegelmann & Tolias 2020 for brain-inspired replay).

fumd keeps, per label, the features of the last ``learning.replay_capacity`` inputs that
carried it (a ring buffer per label: a drifting class refreshes its own slots, a class that stops
arriving keeps its last examples), and two running frequencies per label: a recent one ``f``
(half-life ``learning.replay_recent_halflife`` inputs) and a long-run one ``F`` (the plain mean at
first, then half-life ``learning.replay_longrun_halflife``). Each live labelled input then owes

    w_l = replay_per_input / L_seen  +  replay_restore * max(0, F_l - f_l)        (per label l)

replays, drawn label by label in proportion to ``w_l``: a steady, class-balanced share, and a
share that restores the classes the stream has recently stopped showing. On a stationary stream
``F ~ f`` and only the steady share runs (replaying there is extra training of noisy labels and
slows tracking of drift: SEA lost 0.015 with a steady rate of 0.5); after a class-incremental
shift the absent classes are rehearsed at about ``replay_restore`` times the rate they used to
arrive, until ``F`` forgets them. A drawn example is scaled with the encoder's *current* feature statistics (it
looks as it would today, not as it did when the statistics were others), encoded into fresh
Poisson spikes and learned with the label modulator exactly like a live input. Replay is simulated
and learned like any input (membrane state, traces, readout weights, thresholds, intrinsic state
change); it produces no result, and leaves the SIE, the reward baselines, the activity ring the jobs
read and the step count alone. All draws come
from the engine's generator, and the buffer and frequencies are part of the state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ReplayParams:
    per_input: float  # learning.replay_per_input: steady class-balanced replays per labelled input
    restore: float  # learning.replay_restore: gain on the frequency deficit max(0, F - f)
    recent_halflife: float  # inputs
    longrun_halflife: float  # inputs


def replay_weights(recent: torch.Tensor, longrun: torch.Tensor, seen: torch.Tensor, p: ReplayParams) -> torch.Tensor:
    """Replays owed per label for one live labelled input (float64 [labels])::

        w_l = per_input / L_seen + restore * max(0, F_l - f_l)      (labels with examples; 0 elsewhere)
    """
    n_seen = int(seen.sum())
    if n_seen == 0:
        return torch.zeros_like(recent)
    w = p.per_input / n_seen + p.restore * (longrun - recent).clamp(min=0.0)
    return torch.where(seen, w, torch.zeros_like(w))


def update_frequencies(recent: torch.Tensor, longrun: torch.Tensor, count: int, label: int,
                       p: ReplayParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Running label frequencies after one more labelled input (``count`` seen before it):
    ``f += a_r (onehot - f)`` with ``a_r = ln 2 / recent_halflife``, the same for ``F`` with
    ``max(1 / (count + 1), ln 2 / longrun_halflife)`` (the plain mean first). ``f`` also starts
    as the plain mean, so a young stream shows no deficit."""
    onehot = torch.zeros_like(recent)
    onehot[label] = 1.0
    a_r = max(1.0 / (count + 1), math.log(2.0) / p.recent_halflife)
    a_l = max(1.0 / (count + 1), math.log(2.0) / p.longrun_halflife)
    return recent + a_r * (onehot - recent), longrun + a_l * (onehot - longrun)


@dataclass
class ReplayBuffer:
    """Ring buffer of input features per label and the label frequencies (state, checkpointed)."""

    features: torch.Tensor  # float64 [labels, capacity, features]: the records' features as given
    filled: torch.Tensor  # int64 [labels]: stored examples per label (<= capacity)
    head: torch.Tensor  # int64 [labels]: next slot to overwrite per label
    recent: torch.Tensor  # float64 [labels]: recent label frequency f
    longrun: torch.Tensor  # float64 [labels]: long-run label frequency F
    count: int = 0  # labelled inputs seen
    credit: float = 0.0  # replays owed (each replay spends 1)

    @classmethod
    def empty(cls, labels: int, capacity: int, size: int) -> "ReplayBuffer":
        return cls(features=torch.zeros(labels, capacity, size, dtype=torch.float64),
                   filled=torch.zeros(labels, dtype=torch.int64), head=torch.zeros(labels, dtype=torch.int64),
                   recent=torch.zeros(labels, dtype=torch.float64), longrun=torch.zeros(labels, dtype=torch.float64))

    @property
    def capacity(self) -> int:
        return int(self.features.shape[1])

    def observe(self, label: int, features: np.ndarray, params: ReplayParams) -> torch.Tensor:
        """Keep ``features`` as the newest example of ``label`` (overwriting its oldest when
        full), update the frequencies, add this input's replays to the credit; returns the
        per-label weights that the draws follow."""
        if self.capacity == 0:
            return torch.zeros_like(self.recent)
        slot = int(self.head[label])
        self.features[label, slot] = torch.from_numpy(np.asarray(features, dtype=np.float64))
        self.head[label] = (slot + 1) % self.capacity
        self.filled[label] = min(int(self.filled[label]) + 1, self.capacity)
        self.recent, self.longrun = update_frequencies(self.recent, self.longrun, self.count, label, params)
        self.count += 1
        weights = replay_weights(self.recent, self.longrun, self.filled > 0, params)
        self.credit += float(weights.sum())
        return weights

    def draw(self, weights: torch.Tensor, generator: torch.Generator) -> tuple[int, np.ndarray] | None:
        """A label in proportion to ``weights``, then one of its examples uniformly; None when no
        label has weight. Draws from ``generator``."""
        if float(weights.sum()) <= 0.0:
            return None
        u = float(torch.rand((), generator=generator, device=generator.device, dtype=torch.float64))
        cumulative = torch.cumsum(weights, 0)
        label = min(int(torch.searchsorted(cumulative, torch.tensor(u * float(cumulative[-1]), dtype=torch.float64),
                                           right=True)), weights.numel() - 1)
        while float(weights[label]) <= 0.0:  # u * total landed on a boundary: step back to a weighted label
            label -= 1
        slot = _randint(int(self.filled[label]), generator)
        return label, self.features[label, slot].numpy()

    def state_dict(self) -> dict[str, torch.Tensor | float | int]:
        return {"features": self.features, "filled": self.filled, "head": self.head, "recent": self.recent,
                "longrun": self.longrun, "count": self.count, "credit": self.credit}

    def load_state_dict(self, data: dict) -> None:
        """Restore; a checkpoint from before replay (or with another capacity) starts empty."""
        features = data.get("features")
        if features is None or tuple(features.shape) != tuple(self.features.shape):
            return
        self.features = torch.as_tensor(features, dtype=torch.float64).cpu().clone()
        self.filled = torch.as_tensor(data["filled"], dtype=torch.int64).cpu().clone()
        self.head = torch.as_tensor(data["head"], dtype=torch.int64).cpu().clone()
        self.recent = torch.as_tensor(data["recent"], dtype=torch.float64).cpu().clone()
        self.longrun = torch.as_tensor(data["longrun"], dtype=torch.float64).cpu().clone()
        self.count = int(data["count"])
        self.credit = float(data["credit"])


def _randint(n: int, generator: torch.Generator) -> int:
    return int(torch.randint(n, (1,), generator=generator, device=generator.device).item())
