"""The spike exchange between shards after every step (issue #12).

Each shard sends the spikes of its *boundary* neurons (those with a synapse onto another shard)
as a compact list of global indices; every shard receives every list (an all-gather; a shard
ignores the rows it holds no synapse of, at no cost). Two implementations of ``SpikeExchange``:

* ``TorchExchange``: ``torch.distributed`` (gloo on the CPU), one all-gather per step of a
  fixed-size buffer (count + indices), a second one only when a list outgrows it;
* ``ThreadExchange``: shards as threads of one process (the kernels release the GIL), for tests
  and for comparing against the single process without a process group.

Both count the bytes each rank sends (``bytes_sent``) and the time spent inside the exchange
(``wait_seconds``: waiting for the slowest rank included).
"""
from __future__ import annotations

import threading
import time

import numpy as np
import torch


class TorchExchange:
    """All-gather through the default ``torch.distributed`` process group, in one collective per
    step: every rank sends ``[count, indices..., padding]`` of a fixed ``capacity + 1`` slots; a
    step where some rank has more than ``capacity`` spikes to send takes a second all-gather for
    the rest, and the capacity grows to twice that count (so it settles after a few steps)."""

    def __init__(self, capacity: int = 64) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.world = dist.get_world_size()
        self.capacity = max(1, int(capacity))
        self.bytes_sent = 0
        self.wait_seconds = 0.0
        self.steps = 0

    def exchange(self, sent: np.ndarray) -> list[np.ndarray]:
        sent = np.asarray(sent, dtype=np.int64)
        if self.world == 1:  # nothing to exchange
            self.steps += 1
            return [sent]
        started = time.perf_counter()
        k, cap = int(sent.shape[0]), self.capacity
        buf = torch.zeros(cap + 1, dtype=torch.int64)
        buf[0] = k
        head = min(k, cap)
        buf[1 : head + 1] = torch.from_numpy(sent[:head])
        bufs = [torch.empty(cap + 1, dtype=torch.int64) for _ in range(self.world)]
        self.dist.all_gather(bufs, buf)
        self.bytes_sent += 8 * (cap + 1)
        sizes = [int(b[0]) for b in bufs]
        out = [b[1 : min(n, cap) + 1].numpy() for b, n in zip(bufs, sizes, strict=True)]
        longest = max(sizes)
        if longest > cap:  # the rest, padded to the longest rest
            rest = torch.zeros(longest - cap, dtype=torch.int64)
            if k > cap:
                rest[: k - cap] = torch.from_numpy(sent[cap:])
            rests = [torch.empty(longest - cap, dtype=torch.int64) for _ in range(self.world)]
            self.dist.all_gather(rests, rest)
            self.bytes_sent += 8 * (longest - cap)
            out = [np.concatenate([o, r[: max(0, n - cap)].numpy()]) for o, r, n in zip(out, rests, sizes, strict=True)]
            self.capacity = 2 * longest
        self.wait_seconds += time.perf_counter() - started
        self.steps += 1
        return out


class ThreadExchange:
    """Shards as threads: ``for_rank(r)`` gives shard ``r`` its endpoint; every endpoint must call
    ``exchange`` the same number of times (a barrier per call)."""

    def __init__(self, shards: int):
        self.shards = shards
        self._slots: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * shards
        self._barrier = threading.Barrier(shards)

    def for_rank(self, rank: int) -> "_ThreadEndpoint":
        return _ThreadEndpoint(self, rank)


class _ThreadEndpoint:
    def __init__(self, hub: ThreadExchange, rank: int):
        self.hub = hub
        self.rank = rank
        self.bytes_sent = 0
        self.wait_seconds = 0.0
        self.steps = 0

    def exchange(self, sent: np.ndarray) -> list[np.ndarray]:
        started = time.perf_counter()
        self.hub._slots[self.rank] = np.asarray(sent, dtype=np.int64)
        self.hub._barrier.wait()  # every shard has written its list
        out = list(self.hub._slots)
        self.hub._barrier.wait()  # every shard has read them: the slots may be written again
        self.bytes_sent += 8 + 8 * int(sent.shape[0])
        self.wait_seconds += time.perf_counter() - started
        self.steps += 1
        return out
