"""``fumd plot``: PNG figures of what the network is and did (seed 002 §5.E.2 "Visualization").

Sources: the newest valid checkpoint in ``STATE_DIR/checkpoints`` (weights, clusters, avalanche
sizes of the criticality job) and ``STATE_DIR/history`` (``cycles.jsonl``, ``raster.npz``; see
``fumd.ops.history``). Figures, one PNG each, written into ``out_dir``:

- ``raster.png``: spike raster of the last cycle before the newest checkpoint (excitatory and
  inhibitory neurons coloured apart) with the population spike count per time step below.
- ``weights.png``: weight distribution, excitatory (w > 0) and inhibitory (w < 0) synapses, with the
  synapses tagged persistent drawn on top.
- ``cluster_rates.png``: mean firing rate per cluster over time (heat map; cluster ids are those of
  each history line, so they can change meaning when the clustering job re-clusters) and the
  population rate.
- ``reward.png``: ``total_reward`` and its SIE components over time.
- ``cluster_graph.png``: the cluster-level graph (networkx): one node per cluster (size = neurons),
  one directed edge per cluster pair with the summed synaptic weight (excitatory minus inhibitory),
  the strongest edges only (hierarchical visualisation, seed §5.E.2 "Scalability").
- ``avalanches.png``: the avalanche-size distribution of the criticality job's ring (log-log) with
  its discrete power-law fit (``fit_discrete_power_law``, Clauset et al. 2009) and the critical
  exponent 3/2 for reference.

A figure whose input is missing (no history yet, criticality job never enabled, too few
avalanches to fit) is skipped or drawn with what there is; only a state directory without any
checkpoint is an error. Rendering uses matplotlib's Agg canvas through ``Figure`` objects (no
pyplot, no display, no global state), so it is safe in a daemon thread or on a headless server.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..errors import FumdError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REWARD_COMPONENTS = ("td_error", "novelty", "habituation", "self_benefit", "external")
MAX_GRAPH_EDGES = 80  # strongest inter-cluster edges drawn
MAX_RASTER_NEURONS = 4000  # larger networks: a fixed, evenly spaced subset of neurons


class PlotError(FumdError):
    """Nothing to plot (no checkpoint in the state directory)."""


def make_plots(state_dir: Path, out_dir: Path) -> list[Path]:
    """Render every figure that the state directory has data for; returns the PNG paths written."""
    from ..persistence.read import load_latest
    from .history import read_jsonl

    state_dir, out_dir = Path(state_dir), Path(out_dir)
    loaded = load_latest(state_dir / "checkpoints")
    if loaded is None:
        raise PlotError(f"{state_dir}: no checkpoint in {state_dir / 'checkpoints'} (run the daemon first)")
    state = loaded.state
    history = state_dir / "history"
    cycles = read_jsonl(history / "cycles.jsonl")
    # a replay after a crash may append the same steps again: keep the last line per step
    cycles = sorted({int(c["step"]): c for c in cycles if "step" in c}.values(), key=lambda c: c["step"])
    step = int(state.get("steps_done", 0))

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures: list[tuple[str, Callable[[], Any]]] = [
        ("raster.png", lambda: _raster(history / "raster.npz", state)),
        ("weights.png", lambda: _weights(state, step)),
        ("cluster_rates.png", lambda: _cluster_rates(cycles)),
        ("reward.png", lambda: _reward(cycles)),
        ("cluster_graph.png", lambda: _cluster_graph(state, step)),
        ("avalanches.png", lambda: _avalanches(state, step)),
    ]
    for name, draw in figures:
        fig = draw()
        if fig is None:
            continue
        path = out_dir / name
        tmp = out_dir / f".{name}.tmp"
        fig.savefig(tmp, format="png", dpi=100)
        tmp.replace(path)
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
def _figure(width: float = 10.0, height: float = 6.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _np(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def _raster(path: Path, state: dict[str, Any]) -> Figure | None:
    if not path.exists():
        return None
    with np.load(path) as data:
        t, n = (int(v) for v in data["shape"])
        raster = np.unpackbits(data["bits"], axis=1, count=n).astype(bool)[:t]
        raster_step = int(data["step"]) if "step" in data else None
    n_exc = int(state.get("network.n_exc", n))
    if n > MAX_RASTER_NEURONS:
        keep = np.linspace(0, n - 1, MAX_RASTER_NEURONS).astype(np.int64)
    else:
        keep = np.arange(n)
    steps, neurons = np.nonzero(raster[:, keep])
    neurons = keep[neurons]
    fig = _figure(10, 7)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    exc = neurons < n_exc
    top.scatter(steps[exc], neurons[exc], s=30, marker="|", linewidths=1.5, color="tab:blue",
                label=f"excitatory ({n_exc})")
    top.scatter(steps[~exc], neurons[~exc], s=30, marker="|", linewidths=1.5, color="tab:red",
                label=f"inhibitory ({n - n_exc})")
    top.axhline(n_exc - 0.5, color="0.6", lw=0.5)
    top.set_ylim(-0.5, n - 0.5)
    top.set_ylabel("neuron")
    top.set_title(f"Spike raster, last cycle before checkpoint (step {raster_step}): "
                  f"{int(raster.sum())} spikes, {n} neurons x {t} steps")
    top.legend(loc="upper right", markerscale=4, fontsize="small")
    bottom.bar(np.arange(t), raster.sum(1), width=1.0, color="0.3")
    bottom.set_xlabel("time step in the cycle")
    bottom.set_ylabel("spikes / step")
    bottom.set_xlim(-0.5, t - 0.5)
    return fig


def _weights(state: dict[str, Any], step: int) -> Figure:
    w = _np(state["network.w"]).astype(np.float64)
    persistent = _np(state.get("network.persistent", np.zeros(w.size, bool))).astype(bool)
    fig = _figure(10, 5)
    axes = fig.subplots(1, 2)
    for ax, (label, mask, colour) in zip(axes, (("excitatory", w > 0, "tab:blue"), ("inhibitory", w < 0, "tab:red")),
                                         strict=True):
        values = w[mask]
        pers = w[mask & persistent]
        if values.size:
            bins = np.linspace(values.min(), values.max(), 60) if values.min() < values.max() else 10
            ax.hist(values, bins=bins, color=colour, alpha=0.6, label=f"all ({values.size})")
            if pers.size:
                ax.hist(pers, bins=bins, color="black", histtype="step", lw=1.5, label=f"persistent ({pers.size})")
            else:
                ax.plot([], [], color="black", label="persistent (0)")
            ax.set_yscale("log")
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no synapses", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{label} synapses")
        ax.set_xlabel("weight w")
        ax.set_ylabel("synapses")
    fig.suptitle(f"Weight distribution at step {step}: {w.size} synapses, {int(persistent.sum())} persistent")
    return fig


def _cluster_rates(cycles: list[dict[str, Any]]) -> Figure | None:
    rows = [c for c in cycles if c.get("cluster_rates_hz")]
    if not rows:
        return None
    steps = np.array([c["step"] for c in rows], dtype=np.int64)
    k = max(len(c["cluster_rates_hz"]) for c in rows)
    grid = np.full((k, len(rows)), np.nan)
    for j, c in enumerate(rows):
        r = np.array([np.nan if v is None else v for v in c["cluster_rates_hz"]], dtype=np.float64)
        grid[: r.size, j] = r
    fig = _figure(11, 7)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    edges = _edges(steps)
    mesh = top.pcolormesh(edges, np.arange(k + 1) - 0.5, np.ma.masked_invalid(grid), cmap="viridis", shading="flat")
    fig.colorbar(mesh, ax=top, label="mean firing rate (Hz)")
    top.set_ylabel("cluster id")
    top.set_title("Firing rate per cluster over time (ids as assigned at each step)")
    bottom.plot(steps, [c.get("rate_hz") if c.get("rate_hz") is not None else np.nan for c in rows], color="black",
                lw=1)
    bottom.set_ylabel("population (Hz)")
    bottom.set_xlabel("step (cycles learned)")
    return fig


def _edges(steps: np.ndarray) -> np.ndarray:
    if steps.size == 1:
        return np.array([steps[0] - 0.5, steps[0] + 0.5], dtype=np.float64)
    mid = (steps[1:] + steps[:-1]) / 2.0
    return np.concatenate(([steps[0] - (mid[0] - steps[0])], mid, [steps[-1] + (steps[-1] - mid[-1])]))


def _reward(cycles: list[dict[str, Any]]) -> Figure | None:
    rows = [c for c in cycles if c.get("total_reward") is not None]
    if not rows:
        return None
    steps = np.array([c["step"] for c in rows])
    fig = _figure(11, 7)
    top, bottom = fig.subplots(2, 1, sharex=True)
    total = np.array([c["total_reward"] for c in rows], dtype=np.float64)
    top.plot(steps, total, color="black", lw=1, label="total_reward")
    if total.size >= 5:
        kernel = np.ones(5) / 5
        top.plot(steps[2:-2], np.convolve(total, kernel, mode="valid"), color="tab:orange", lw=2, label="5-point mean")
    top.axhline(0, color="0.7", lw=0.5)
    for bound in (-2, 2):  # seed §5.E.2: sustained |reward| > 2 is an anomaly
        if np.nanmax(np.abs(total)) > 1.5:
            top.axhline(bound, color="tab:red", lw=0.8, ls="--")
    top.set_ylabel("total reward")
    top.legend(fontsize="small")
    top.set_title("SIE reward and its components over time")
    for name in REWARD_COMPONENTS:
        values = np.array([(c.get("components") or {}).get(name, np.nan) for c in rows], dtype=np.float64)
        if np.isfinite(values).any():
            bottom.plot(steps, values, lw=1, label=name)
    bottom.axhline(0, color="0.7", lw=0.5)
    bottom.set_xlabel("step (cycles learned)")
    bottom.set_ylabel("component")
    bottom.legend(fontsize="small", ncol=3)
    return fig


def cluster_weights(state: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """Summed synaptic weight from cluster a to cluster b (``[K, K]``, signed), neurons per
    cluster, K."""
    indptr = _np(state["network.indptr"]).astype(np.int64)
    col = _np(state["network.col"]).astype(np.int64)
    w = _np(state["network.w"]).astype(np.float64)
    cluster = _np(state["network.cluster"]).astype(np.int64)
    k = int(max(int(state.get("network.n_clusters", 0)), int(cluster.max()) + 1 if cluster.size else 0, 1))
    pre = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    flat = cluster[pre] * k + cluster[col]
    summed = np.bincount(flat, weights=w, minlength=k * k).reshape(k, k)
    sizes = np.bincount(cluster, minlength=k)
    return summed, sizes, k


def _cluster_graph(state: dict[str, Any], step: int) -> Figure:
    import networkx as nx
    from matplotlib import colormaps

    summed, sizes, k = cluster_weights(state)
    g = nx.DiGraph()
    for c in range(k):
        if sizes[c]:
            g.add_node(c, size=int(sizes[c]), internal=float(summed[c, c]))
    pairs = [(a, b, summed[a, b]) for a in range(k) for b in range(k)
             if a != b and sizes[a] and sizes[b] and summed[a, b] != 0]
    pairs.sort(key=lambda e: -abs(e[2]))
    shown = pairs[:MAX_GRAPH_EDGES]
    for a, b, value in shown:
        g.add_edge(a, b, weight=float(value))
    fig = _figure(10, 9)
    ax = fig.subplots()
    if g.number_of_edges():
        pos = nx.spring_layout(g, weight=None, seed=0)
    else:
        pos = nx.circular_layout(g)
    cmap = colormaps["tab20"]
    nodes = list(g.nodes)
    nx.draw_networkx_nodes(g, pos, ax=ax, nodelist=nodes,
                           node_size=[60 + 600 * g.nodes[c]["size"] / max(sizes.max(), 1) for c in nodes],
                           node_color=[cmap(c % 20) for c in nodes], edgecolors="black", linewidths=0.5)
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=8)
    if shown:
        top = max(abs(v) for _, _, v in shown)
        edges = [(a, b) for a, b, _ in shown]
        nx.draw_networkx_edges(g, pos, ax=ax, edgelist=edges, arrows=True, arrowsize=8, node_size=300,
                               width=[0.5 + 4.0 * abs(v) / top for _, _, v in shown],
                               edge_color=["tab:blue" if v > 0 else "tab:red" for _, _, v in shown],
                               alpha=0.7, connectionstyle="arc3,rad=0.1")
    ax.plot([], [], color="tab:blue", lw=2, label="net excitatory (sum w > 0)")
    ax.plot([], [], color="tab:red", lw=2, label="net inhibitory (sum w < 0)")
    ax.legend(loc="lower left", fontsize="small")
    ax.set_title(f"Cluster graph at step {step}: {g.number_of_nodes()} clusters, "
                 f"{len(shown)} of {len(pairs)} inter-cluster edges (strongest |sum w|)")
    ax.set_axis_off()
    return fig


def avalanche_sizes(state: dict[str, Any]) -> np.ndarray:
    """The criticality job's ring of avalanche sizes (electrode sizes), oldest first."""
    from ..analysis.ring import chronological

    buf = state.get("jobs.criticality.sizes.buf")
    if buf is None:
        return np.zeros(0, dtype=np.int64)
    buf = _np(buf).astype(np.int64)
    return chronological(buf, int(state.get("jobs.criticality.sizes.count", buf.size)))


def _avalanches(state: dict[str, Any], step: int) -> Figure | None:
    from scipy.special import zeta

    from ..analysis.powerlaw import criticality_index, fit_discrete_power_law
    from ..jobs.config import CriticalityConfig  # the job's defaults for the fit

    sizes = avalanche_sizes(state)
    sizes = sizes[sizes >= 1]
    if sizes.size == 0:
        return None
    cfg = CriticalityConfig()
    fit = fit_discrete_power_law(sizes, min(cfg.min_tail, max(sizes.size // 2, 5)), cfg.max_xmin_candidates,
                                 cfg.min_tail_fraction)
    values, counts = np.unique(sizes, return_counts=True)
    pmf = counts / sizes.size
    fig = _figure(9, 6.5)
    ax = fig.subplots()
    ax.scatter(values, pmf, s=14, color="tab:blue", label=f"observed ({sizes.size} avalanches)")
    title = f"Avalanche sizes at step {step} (criticality job electrodes)"
    if fit is not None:
        x = np.arange(fit.x_min, values.max() + 1, dtype=np.float64)
        tail_fraction = fit.n_tail / sizes.size
        model = tail_fraction * x ** -fit.tau / zeta(fit.tau, fit.x_min)
        ax.plot(x, model, color="tab:red", lw=2,
                label=f"power-law fit: tau = {fit.tau:.2f} +/- {fit.sigma:.2f}, x_min = {fit.x_min}, KS = {fit.ks:.3f}")
        ref = tail_fraction * x ** -1.5 / zeta(1.5, fit.x_min)
        ax.plot(x, ref, color="0.4", lw=1, ls="--", label="critical exponent 3/2 (same x_min)")
        ax.axvline(fit.x_min, color="0.7", lw=0.5)
        title += f"\ncriticality index |tau - 1.5| = {criticality_index(fit.tau):.2f}"
    else:
        title += "\n(too few avalanches for a power-law fit)"
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("avalanche size (events on the electrodes)")
    ax.set_ylabel("P(size)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


__all__ = ["make_plots", "PlotError", "cluster_weights", "avalanche_sizes"]

