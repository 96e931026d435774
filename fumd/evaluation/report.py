"""The JSON summary of an evaluation and its PNG learning curves.

Figures (matplotlib ``Figure`` objects on the Agg canvas: no pyplot, no display), one PNG per stream
and seed, ``<stream>-seed<k>.png`` (``-shift.png`` for the shift protocol), four panels:

1. rolling prequential accuracy of fumd and of each River baseline (window ``--window``), with
   chance; the shift protocol marks its phases;
2. fumd's action shares over the same rolling window, with each class's share of the stream dashed
   (a collapse shows as one line far above its dashed level);
3. fumd's reward: rolling mean of ``total_reward`` and of each SIE component;
4. the network's mean firing rate per input (Hz) and its rolling mean.

Beside them ``<stream>-seed<k>.jsonl`` holds one line per input (label, action, correct,
total_reward, components, rate_hz, each baseline's prediction) and ``summary.json`` the summary.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .baselines import BASELINES, describe
from .prequential import Options, RunResult
from .streams import Stream

COMPONENTS = ("td_error", "novelty", "habituation", "self_benefit", "external")
_OUTSIDE: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 7, "borderaxespad": 0.0}


# -- summary ------------------------------------------------------------------------------------
def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else None


def stream_block(stream: Stream, runs: list[RunResult]) -> dict[str, Any]:
    """One stream's part of the summary: per seed, then the mean over seeds."""
    seeds = {str(r.seed): r.summary for r in runs}
    block: dict[str, Any] = {
        "description": stream.description, "kind": stream.kind, "n_features": stream.n_features,
        "classes": list(stream.classes), "baseline_models": describe(stream.kind), "seeds": seeds,
    }
    if runs and runs[0].protocol == "shift":
        block["mean"] = {
            "fumd_retention": _mean(r.summary["fumd"]["retention"] for r in runs),
            "logistic_regression_retention": _mean(r.summary["baselines"]["logistic_regression"]["retention"]
                                                   for r in runs),
            "fumd_test_A_before": _mean(r.summary["fumd"]["test_A_before_accuracy"] for r in runs),
            "fumd_test_A_after": _mean(r.summary["fumd"]["test_A_after_accuracy"] for r in runs),
            "fumd_test_B_after": _mean(r.summary["fumd"]["test_B_after_accuracy"] for r in runs),
            "logistic_regression_test_B_after": _mean(
                r.summary["baselines"]["logistic_regression"]["test_B_after_accuracy"] for r in runs),
        }
    else:
        block["mean"] = {
            "fumd_accuracy": _mean(r.summary["fumd"]["accuracy"] for r in runs),
            "fumd_accuracy_last_third": _mean(r.summary["fumd"]["accuracy_last_third"] for r in runs),
            **{f"{name}_accuracy_last_third": _mean(r.summary["baselines"][name]["accuracy_last_third"] for r in runs)
               for name in BASELINES},
            "ratio_last_third": _mean(r.summary["ratio_last_third"] for r in runs),
            "collapsed": any(r.summary["fumd"]["collapse"]["collapsed"] for r in runs),
            "max_action_share": max((r.summary["fumd"]["collapse"].get("max_action_share", 0.0) for r in runs),
                                    default=None),
            "seconds_per_input": _mean(r.summary["fumd"]["seconds_per_input"] for r in runs),
        }
    return block


def suite_block(streams: dict[str, dict[str, Any]], protocol: str) -> dict[str, Any]:
    means = {name: block["mean"] for name, block in streams.items()}
    if protocol == "shift":
        return {
            "mean_fumd_retention": _mean(m["fumd_retention"] for m in means.values()),
            "mean_logistic_regression_retention": _mean(m["logistic_regression_retention"] for m in means.values()),
            "streams": len(means),
        }
    ratios = {name: m["ratio_last_third"] for name, m in means.items()}
    known = [r for r in ratios.values() if r is not None]
    return {
        "mean_ratio_last_third": _mean(ratios.values()),
        "min_ratio_last_third": min(known) if known else None,
        "streams_below_0.9": sorted(name for name, r in ratios.items() if r is not None and r < 0.9),
        "collapsed_streams": sorted(name for name, m in means.items() if m["collapsed"]),
        "mean_fumd_accuracy_last_third": _mean(m["fumd_accuracy_last_third"] for m in means.values()),
        "mean_logistic_regression_accuracy_last_third":
            _mean(m["logistic_regression_accuracy_last_third"] for m in means.values()),
        "seconds_per_input": _mean(m["seconds_per_input"] for m in means.values()),
        "streams": len(means),
    }


def settings_block(opts: Options, seeds: list[int], protocol: str, config_path: Path | None,
                   example: RunResult | None) -> dict[str, Any]:
    import river

    from .. import __version__

    cfg = example.loop.config if example is not None else None
    enabled_jobs = sorted(example.loop.jobs.jobs) if example is not None else None
    return {
        "protocol": protocol, "inputs": opts.inputs, "seeds": seeds, "window": opts.window,
        "neurons": cfg.engine.network.neurons if cfg is not None else opts.neurons,
        "deterministic": cfg.deterministic if cfg is not None else opts.force_deterministic,
        "jobs": "on" if opts.jobs else "off", "enabled_jobs": enabled_jobs,
        "learning": "on" if opts.learning else "off",
        "config": str(config_path) if config_path is not None else None,
        "fumd_version": __version__, "river_version": river.__version__,
    }


def rounded(value: Any, digits: int = 4) -> Any:
    """Floats rounded to ``digits`` significant digits for reading; inf/nan become null (JSON has neither)."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {str(k): rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


# -- files --------------------------------------------------------------------------------------
def write_run_files(run: RunResult, stream: Stream, out: Path, window: int) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{run.stream}-seed{run.seed}" + ("-shift" if run.protocol == "shift" else "")
    records = out / f"{stem}.jsonl"
    tmp = out / f".{stem}.jsonl.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        for entry in run.log:
            fh.write(json.dumps(rounded(entry, 6)) + "\n")
    tmp.replace(records)
    png = out / f"{stem}.png"
    fig = learning_curves(run, stream, window)
    tmp_png = out / f".{stem}.png.tmp"
    fig.savefig(tmp_png, format="png", dpi=90)
    tmp_png.replace(png)
    return {"plot": str(png), "records": str(records)}


def write_summary(summary: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.json"
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# -- figures ------------------------------------------------------------------------------------
def rolling_mean(values: Iterable[float | None], window: int) -> np.ndarray:
    """Mean over the last ``window`` values (fewer at the start), ignoring missing ones."""
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    ok = ~np.isnan(arr)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, arr, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(len(arr))
    lo = np.maximum(0, idx - window + 1)
    counts = ccount[idx + 1] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, (csum[idx + 1] - csum[lo]) / np.maximum(counts, 1), np.nan)


def learning_curves(run: RunResult, stream: Stream, window: int) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 10), layout="constrained")
    ax_acc, ax_act, ax_rew, ax_rate = fig.subplots(4, 1, sharex=True)
    x = np.arange(1, len(run.log) + 1)
    if run.protocol == "shift":
        s = run.summary
        title = (f"{run.stream}, seed {run.seed}, shift A={s['domains']['A']} -> B: retention fumd "
                 f"{format_score(s['fumd']['retention'])}, logistic "
                 f"{format_score(s['baselines']['logistic_regression']['retention'])}")
    else:
        s = run.summary
        title = (f"{run.stream}, seed {run.seed}: last third fumd {format_score(s['fumd']['accuracy_last_third'])}, "
                 f"logistic {format_score(s['baselines']['logistic_regression']['accuracy_last_third'])} (ratio "
                 f"{format_score(s['ratio_last_third'])})")
    fig.suptitle(title, fontsize=10)

    # 1. rolling accuracy
    ax_acc.plot(x, run.curves["fumd"], color="black", lw=2.0, label="fumd")
    for name, colour in zip(BASELINES, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=True):
        ax_acc.plot(x, run.curves[name], color=colour, lw=1.0, alpha=0.8, label=name)
    ax_acc.axhline(1.0 / len(stream.classes), color="grey", ls=":", lw=1.0, label="chance")
    ax_acc.set_ylim(-0.02, 1.02)
    ax_acc.set_ylabel(f"accuracy (rolling {window})")
    ax_acc.legend(**_OUTSIDE)

    # 2. action shares
    actions = [e["action"] for e in run.log]
    labels = [e["label"] for e in run.log]
    cmap = _colours(len(stream.classes))
    for k, cls in enumerate(stream.classes):
        share = rolling_mean([1.0 if a == cls else 0.0 for a in actions], window)
        ax_act.plot(x, share, color=cmap[k], lw=1.2, label=cls)
        ax_act.axhline(labels.count(cls) / max(1, len(labels)), color=cmap[k], ls="--", lw=0.8)
    others = [a for a in set(actions) if a not in stream.classes]
    if others:
        share = rolling_mean([1.0 if a not in stream.classes else 0.0 for a in actions], window)
        ax_act.plot(x, share, color="black", lw=1.0, ls=":", label="other")
    ax_act.set_ylim(-0.02, 1.02)
    ax_act.set_ylabel("fumd action share")
    ax_act.legend(**_OUTSIDE, ncol=1 if len(stream.classes) <= 6 else 2, title="dashed:\nclass share", title_fontsize=7)

    # 3. reward components
    ax_rew.plot(x, rolling_mean([e["total_reward"] for e in run.log], window), color="black", lw=1.8,
                label="total_reward")
    for name in COMPONENTS:
        ax_rew.plot(x, rolling_mean([e["components"].get(name) for e in run.log], window), lw=1.0, label=name)
    ax_rew.axhline(0.0, color="grey", lw=0.6)
    ax_rew.set_ylabel(f"reward (rolling mean {window})")
    ax_rew.legend(**_OUTSIDE)

    # 4. firing rate
    rates = [e["rate_hz"] for e in run.log]
    ax_rate.plot(x, rates, color="tab:purple", lw=0.5, alpha=0.4, label="per input")
    ax_rate.plot(x, rolling_mean(rates, window), color="tab:purple", lw=1.5, label=f"rolling mean {window}")
    ax_rate.set_ylabel("mean rate (Hz)")
    ax_rate.set_xlabel("input")
    ax_rate.legend(**_OUTSIDE)

    if len(run.phases) > 1:
        for ax in (ax_acc, ax_act, ax_rew, ax_rate):
            for _name, start, _end in run.phases[1:]:
                ax.axvline(start + 0.5, color="grey", lw=0.8, ls="-.")
        for name, start, end in run.phases:
            ax_acc.text((start + end) / 2, 1.0, name, ha="center", va="top", fontsize=7, color="dimgrey")
    return fig


def _colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def format_score(value: float | None) -> str:
    """A score to three decimals ("n/a": none)."""
    return "n/a" if value is None else f"{value:.3f}"
