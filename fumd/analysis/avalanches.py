"""Neuronal avalanches, detected the way they are on a multi-electrode array (Beggs & Plenz 2003).

A fixed random subset of ``electrodes`` neurons is "recorded"; their spikes are summed per time
bin; the bin width is the mean inter-event interval (IEI) of that merged train, in steps (running
estimate); an avalanche is a run of consecutive non-empty bins bracketed by empty bins, its size
the number of events in it. Bins and open avalanches carry across cycle boundaries (the daemon
runs one continuous time line). With N in the thousands the whole network spikes in every 1 ms
step, so the seed's literal "contiguous steps with spikes" would make the whole run one
avalanche; subsampling (Priesemann et al. 2009) plus IEI binning is the standard remedy. Sizes
from a subsample are *electrode* sizes: their distribution is not the full network's (Priesemann
et al. 2009; Levina & Priesemann 2017), so the exponent is the exponent *as measured by the fixed
electrode set*, as in the experiments the seed's 1.5 comes from.

A **large avalanche** is one whose estimated network size ``s * N / m`` exceeds
``large_fraction * N`` (seed 002 §5.C.3: 0.1 N), i.e. ``s > large_fraction * m``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..network.spikes import CycleSpikes
from .ring import Ring


def avalanches_from_bins(bins: np.ndarray, open_size: int) -> tuple[list[int], int]:
    """Split a sequence of binned event counts into avalanches (runs of non-empty bins).

    ``open_size`` is the size of an avalanche still running at the end of the previous call (0:
    none); it is joined to a run starting at the first bin. Returns the sizes of the avalanches
    that ended (an empty bin followed them) and the size of the one still open at the end.
    """
    if bins.size == 0:
        return [], open_size
    nz = bins > 0
    padded = np.concatenate(([False], nz, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.nonzero(edges == 1)[0]
    ends = np.nonzero(edges == -1)[0]  # exclusive
    csum = np.concatenate(([0], np.cumsum(bins)))
    sizes = (csum[ends] - csum[starts]).astype(np.int64).tolist()
    closed: list[int] = []
    if open_size and nz[0]:
        sizes[0] += open_size
    elif open_size:  # first bin empty: the open avalanche ended at the cycle boundary
        closed.append(open_size)
    still_open = 0
    if nz[-1]:
        still_open = sizes.pop()
    closed.extend(sizes)
    return closed, still_open


def large_sustained(recent_sizes: np.ndarray, threshold: float) -> bool:
    """seed §5.C.3 "flag if > 0.1 N sustained": the *median* avalanche of the recent window (the
    open one included) exceeds the threshold. A single large avalanche is not an alarm: at
    criticality avalanches of every size up to the system size occur; a typical avalanche that
    large, or one that never ends, is runaway activity."""
    return bool(recent_sizes.size) and float(np.median(recent_sizes)) > threshold


class AvalancheDetector:
    """The electrodes, the binning and the avalanches seen so far, fed one cycle's spikes at a time.

    ``sizes`` holds the sizes of the last ``ring_size`` avalanches that ended, ``per_cycle`` how
    many ended in each of the last ``sustain_window`` cycles. ``bin_steps`` > 0 fixes the bin
    width; 0 uses the mean IEI (EMA weight ``iei_alpha`` per cycle), at most ``max_bin_steps``.
    ``seed`` places the electrodes (a private stream: the engine's RNG is untouched); they are
    drawn again when the network's structure (``structure_version``) or size changes.
    """

    def __init__(self, *, electrodes: int, bin_steps: int, max_bin_steps: int, iei_alpha: float, large_fraction: float,
                 ring_size: int, sustain_window: int, seed: int = 0):
        self.electrodes, self.bin_steps, self.max_bin_steps = electrodes, bin_steps, max_bin_steps
        self.iei_alpha, self.large_fraction, self.seed = iei_alpha, large_fraction, seed
        self.sizes = Ring(ring_size, np.int64)
        self.per_cycle = Ring(sustain_window, np.int64)  # avalanches closed in each recent cycle
        self.electrode_idx: torch.Tensor | None = None
        self.electrode_version = -1  # structure_version the electrodes were drawn for
        self.electrode_n = -1
        self.carry = np.zeros(0, dtype=np.int64)  # steps not yet filling a bin
        self.open_size = 0
        self.event_rate = -1.0  # EMA of electrode events per step (< 0: not yet measured)
        self._mask: tuple[torch.Tensor, torch.Tensor] | None = None  # (electrode_idx it is for, bool [N])

    def bin_width(self) -> int:
        if self.bin_steps > 0:
            return self.bin_steps
        if self.event_rate <= 0:
            return 1
        return int(min(max(round(1.0 / self.event_rate), 1), self.max_bin_steps))

    def n_electrodes(self) -> int:
        return int(self.electrode_idx.numel()) if self.electrode_idx is not None else 0

    def place_electrodes(self, n: int, version: int) -> torch.Tensor:
        """The recorded neurons of a network of ``n`` neurons at ``structure_version`` ``version``;
        a new placement drops the carried steps and the open avalanche."""
        if self.electrode_idx is None or version != self.electrode_version or n != self.electrode_n:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + version * 7919 + 12345) % (2**63 - 1))
            m = min(self.electrodes, n)
            self.electrode_idx = torch.randperm(n, generator=g)[:m].sort().values
            self.electrode_version, self.electrode_n = version, n
            self.carry = np.zeros(0, dtype=np.int64)
            self.open_size = 0
        return self.electrode_idx

    def observe_spikes(self, spikes: CycleSpikes) -> tuple[list[int], bool]:
        """Feed one cycle's spikes (electrodes placed); returns the closed avalanche sizes and
        whether the cycle was *large*. O(spikes + T) from the event list: no [T, N] raster is built
        (20 MB per cycle at 100,000 neurons and 200 steps)."""
        assert self.electrode_idx is not None
        if self._mask is None or self._mask[0] is not self.electrode_idx or self._mask[1].numel() != spikes.n:
            mask = torch.zeros(spikes.n, dtype=torch.bool, device=spikes.neurons.device)
            mask[self.electrode_idx.to(mask.device)] = True
            self._mask = (self.electrode_idx, mask)
        hit = self._mask[1][spikes.neurons.long()]
        per_step = torch.bincount(spikes.spike_steps[hit].long(), minlength=spikes.steps).cpu().numpy()
        return self.observe_counts(per_step.astype(np.int64))

    def observe_counts(self, per_step: np.ndarray) -> tuple[list[int], bool]:
        """Feed one cycle's electrode events per step (int64 [T]); as ``observe_spikes``."""
        assert self.electrode_idx is not None
        m = int(self.electrode_idx.numel())
        b = self.bin_width()
        seq = np.concatenate((self.carry, per_step))
        full = seq.size // b
        bins = seq[: full * b].reshape(full, b).sum(1)
        self.carry = seq[full * b:]
        closed, self.open_size = avalanches_from_bins(bins, self.open_size)
        # running mean inter-event interval of the electrode train
        rate = float(per_step.sum()) / max(per_step.size, 1)
        a = self.iei_alpha
        self.event_rate = rate if self.event_rate < 0 else (1 - a) * self.event_rate + a * rate
        if closed:
            self.sizes.extend(closed)
        self.per_cycle.extend([len(closed)])
        return closed, self.open_size > self.large_fraction * m or any(
            s > self.large_fraction * m for s in closed)

    def recent_sizes(self) -> np.ndarray:
        """Sizes of the avalanches that ended in the last ``sustain_window`` cycles, plus the one
        still open (a saturated network never closes one)."""
        k = min(int(self.per_cycle.values().sum()), len(self.sizes))
        closed = self.sizes.values()[len(self.sizes) - k:] if k else np.zeros(0, dtype=np.int64)
        if self.open_size > 0:
            closed = np.concatenate((closed, [self.open_size]))
        return closed

    # -- persistence ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out.update(self.sizes.state_dict("sizes"))
        out.update(self.per_cycle.state_dict("per_cycle"))
        out["electrode_idx"] = (self.electrode_idx.clone() if self.electrode_idx is not None
                                else torch.zeros(0, dtype=torch.int64))
        out["electrode_version"] = int(self.electrode_version)
        out["electrode_n"] = int(self.electrode_n)
        out["carry"] = torch.from_numpy(self.carry.copy())
        out["open_size"] = int(self.open_size)
        out["event_rate"] = float(self.event_rate)
        return out

    def load_state_dict(self, data: dict[str, Any]) -> None:
        self.sizes.load_state_dict(data, "sizes")
        self.per_cycle.load_state_dict(data, "per_cycle")
        idx = data["electrode_idx"]
        self.electrode_idx = idx.clone().to(torch.int64) if idx.numel() else None
        self.electrode_version = int(data["electrode_version"])
        self.electrode_n = int(data["electrode_n"])
        self.carry = data["carry"].cpu().numpy().astype(np.int64)
        self.open_size = int(data["open_size"])
        self.event_rate = float(data["event_rate"])
