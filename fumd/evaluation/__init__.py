"""``fumd evaluate``: prequential (test-then-train) evaluation of the daemon's code path on named
streams, side by side with River's online baselines (docs/evaluation.md).

River (and scikit-learn's bundled data sets) are dependencies of this command only: install them
with ``pip install -e ".[evaluate]"`` (``.[test]`` includes them). The daemon never imports this
package.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FumdError


class EvaluationError(FumdError):
    """A bad ``fumd evaluate`` request (unknown stream, missing River, ...)."""


def require_river() -> None:
    """Fail with a clear message where River is not installed (it is an optional extra)."""
    try:
        import river  # noqa: F401
    except ImportError:
        raise EvaluationError('fumd evaluate needs River: install it with  pip install -e ".[evaluate]"') from None


def run_evaluation(stream_names: str | None, seeds: list[int], opts: Any, shift: bool = False,
                   out: Path | None = None, config_path: Path | None = None, progress: bool = True) -> dict:
    """Evaluate every named stream (comma-separated; None: the suite) for every seed; returns the
    JSON summary (and writes PNGs, per-input JSON lines and ``summary.json`` into ``out``)."""
    import sys

    from .prequential import run_prequential, run_shift
    from .report import format_score, rounded, settings_block, stream_block, suite_block, write_run_files, write_summary
    from .streams import parse_streams

    require_river()
    if opts.inputs < 3:
        raise EvaluationError(f"--inputs {opts.inputs}: at least 3 inputs are needed")
    if not seeds:
        raise EvaluationError("--seeds: at least one seed is needed")
    streams = parse_streams(stream_names)
    protocol = "shift" if shift else "prequential"
    blocks = {}
    example = None
    for stream in streams:
        runs = []
        for seed in seeds:
            run = (run_shift if shift else run_prequential)(stream, seed, opts)
            if out is not None:
                run.summary.update(write_run_files(run, stream, out, opts.window))
            if progress:
                s = run.summary
                line = (f"retention fumd {format_score(s['fumd']['retention'])}, logistic "
                        f"{format_score(s['baselines']['logistic_regression']['retention'])}"
                        if shift else f"last third fumd {format_score(s['fumd']['accuracy_last_third'])}, logistic "
                                      f"{format_score(s['baselines']['logistic_regression']['accuracy_last_third'])}")
                print(f"fumd evaluate: {stream.name} seed {seed}: {line} ({run.loop.seconds:.1f} s)", file=sys.stderr,
                      flush=True)
            example = example or run
            runs.append(run)
        blocks[stream.name] = stream_block(stream, runs)
    summary = rounded({
        "settings": settings_block(opts, seeds, protocol, config_path, example),
        "streams": blocks,
        "suite": suite_block(blocks, protocol),
    })
    if out is not None:
        summary["summary_file"] = str(write_summary(summary, out))
    return summary
