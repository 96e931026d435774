"""Command line: ``fumd run`` (the daemon), ``feed``, ``status``, ``inspect``, ``bench``, ``evaluate``, ``probe``,
``demo``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import FumdError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fumd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="benchmark the engine at a given size; prints one JSON object")
    bench.add_argument("--neurons", type=int, default=1000)
    bench.add_argument("--synapses-per-neuron", type=int, default=100)
    bench.add_argument("--cycles", type=int, default=20)
    bench.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    bench.add_argument("--compile", choices=["off", "auto", "on"], default="off")
    bench.add_argument("--backend", choices=["auto", "numba", "torch", "sharded"], default="auto",
                       help="compiled CPU kernels (numba), the PyTorch path, or numba kernels on --shards shards "
                            "in parallel in this process; auto = numba on CPU")
    bench.add_argument("--shards", type=int, default=2, help="with --backend sharded: shards (parts run in parallel)")
    bench.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    bench.add_argument("--warmup", type=int, default=None, help="learning cycles before measuring (default: --cycles)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--ranks", type=int, default=None,
                       help="K > 0: the sharded simulation on K local processes (torch.distributed, gloo); "
                            "simulation only, learning off (docs/scaling.md)")
    bench.add_argument("--partition", choices=["metis", "contiguous"], default=None,
                       help="with --ranks (default metis) or --backend sharded (default contiguous): how neurons "
                            "are assigned to shards (metis needs pymetis)")
    bench.add_argument("--verify", action="store_true",
                       help="with --ranks: rank 0 checks every cycle against the single-process simulation")

    run = sub.add_parser("run", help="run the daemon: learn from every file dropped in STATE_DIR/inbox")
    run.add_argument("--state-dir", default="./state", type=Path, help="state directory (default ./state)")
    run.add_argument("--config", type=Path, default=None, help="TOML config (default: built-in defaults)")
    run.add_argument("--seed", type=int, default=None, help="overrides network.seed")
    run.add_argument("--exit-when-idle", action="store_true",
                     help="process everything in the inbox, checkpoint and exit 0 (batch use)")

    feed = sub.add_parser("feed", help="copy files atomically into the daemon's inbox")
    feed.add_argument("files", nargs="+", type=Path)
    feed.add_argument("--state-dir", default="./state", type=Path)

    status = sub.add_parser("status", help="print the daemon's status as JSON")
    status.add_argument("--state-dir", default="./state", type=Path)

    inspect = sub.add_parser("inspect", help="print a JSON summary of a checkpoint (or a state dir's newest)")
    inspect.add_argument("path", type=Path)

    sub.add_parser("config", help="print every config key with its default (TOML)")

    soak = sub.add_parser("soak", help="long-run check: the daemon with all jobs over a varied stream (JSON)")
    soak.add_argument("--cycles", type=int, default=20000)
    soak.add_argument("--neurons", type=int, default=1000)
    soak.add_argument("--switch-every", type=int, default=2000, help="cycles per stream domain")
    soak.add_argument("--sample-seconds", type=float, default=10.0)
    soak.add_argument("--seed", type=int, default=0)
    soak.add_argument("--state-dir", type=Path, default=None, help="work directory (default: a new temp dir)")
    soak.add_argument("--config", type=Path, default=None,
                      help="extra TOML appended to the soak config (e.g. [jobs.*])")

    plot = sub.add_parser("plot", help="PNG figures from a state directory (newest checkpoint + history)")
    plot.add_argument("--state-dir", default="./state", type=Path)
    plot.add_argument("--out", default=None, type=Path, help="output directory (default STATE_DIR/plots)")

    evaluate = sub.add_parser("evaluate",
                              help="prequential accuracy of the daemon's loop on named streams vs River baselines "
                                   "(JSON + PNGs)",
                              description="Prequential (test-then-train) evaluation of the daemon's code path, jobs as "
                                          "configured, side by side with River's online baselines; see "
                                          "docs/evaluation.md.")
    evaluate.add_argument("--streams", default=None,
                          help="comma-separated: "
                               "led,rbf,sea,agrawal,agrawal2,parity,hyperplane,phishing,bananas,wine,iris,digits,"
                               "cancer,topics "
                               "(default: all)")
    evaluate.add_argument("--seeds", default="0", help="comma-separated seeds (stream and network), default 0")
    evaluate.add_argument("--inputs", type=int, default=1500,
                          help="stream length (default 1500); with --shift, INPUTS/2 training inputs per domain")
    evaluate.add_argument("--neurons", type=int, default=None, help="network.neurons (default: the config's)")
    evaluate.add_argument("--config", type=Path, default=None,
                          help="TOML config: engine sections and [jobs.*], as for fumd run")
    evaluate.add_argument("--jobs", choices=["on", "off"], default="on", help="off: every [jobs.*] section disabled")
    evaluate.add_argument("--learning", choices=["on", "off"], default="on",
                          help="off: the control (no plasticity; chance expected)")
    evaluate.add_argument("--shift", action="store_true", help="train classes A, then B, test A: report retention")
    evaluate.add_argument("--nondeterministic", action="store_true",
                          help="do not force deterministic = true (the config's value and its wall-clock job cadences "
                               "apply)")
    evaluate.add_argument("--window", type=int, default=100, help="rolling-accuracy window in inputs (default 100)")
    evaluate.add_argument("--out", type=Path, default=Path("evaluation"),
                          help="directory for PNGs, per-input JSON lines, summary.json (default ./evaluation)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    probe = sub.add_parser("probe",
                           help="diagnose a network on a stream, learning off: offline readout accuracy per "
                                "population, dimension, drive, convergence, repeatability (JSON)",
                           description="Offline diagnosis of a fresh or checkpointed network on a stream; see "
                                       "docs/probe.md.")
    probe.add_argument("--state-dir", type=Path, default=None,
                       help="probe the newest checkpoint here (default: a fresh network)")
    probe.add_argument("--config", type=Path, default=None,
                       help="TOML config of a fresh network (as for fumd evaluate)")
    probe.add_argument("--neurons", type=int, default=None,
                       help="network.neurons of a fresh network (default: the config's)")
    probe.add_argument("--seed", type=int, default=0,
                       help="network.seed of a fresh network and the stream's seed (default 0)")
    probe_source = probe.add_mutually_exclusive_group(required=True)
    probe_source.add_argument("--stream", default=None, help="a named stream of fumd evaluate (docs/evaluation.md)")
    probe_source.add_argument("--records", type=Path, default=None,
                              help="an input file of records (.jsonl, .json, .csv, .npy)")
    probe.add_argument("--inputs", type=int, default=2000, help="inputs measured (default 2000; --records: at most)")
    probe.add_argument("--warmup", type=int, default=200,
                       help="the first W inputs shown once before measuring (default 200)")
    probe.add_argument("--repeats", type=int, default=200,
                       help="the first R inputs shown again, for repeatability (default 200)")
    probe.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    probe.add_argument("--out", type=Path, default=None, help="also write the JSON summary to this file")
    probe.add_argument("--table", action="store_true", help="print a short table instead of the JSON")
    probe.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    demo = sub.add_parser("demo", help="run the engine on a synthetic labelled stream and print accuracy")
    demo.add_argument("--cycles", type=int, default=0, help="stop after this many cycles (0: run until interrupted)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--report-every", type=int, default=100)

    args = parser.parse_args(argv)
    try:
        if args.command == "bench" and args.ranks is not None:
            if args.ranks < 1:
                raise SystemExit("fumd bench: --ranks must be at least 1")
            from .sharding.run import run_ranks

            warmup = args.cycles if args.warmup is None else args.warmup
            print(json.dumps(run_ranks(args.ranks, {
                "neurons": args.neurons, "synapses_per_neuron": args.synapses_per_neuron, "seed": args.seed,
                "warmup": warmup, "cycles": args.cycles, "partition": args.partition or "metis",
                "verify": args.verify})))
            return 0
        if args.command == "bench":
            from .bench import run_bench

            print(json.dumps(run_bench(args.neurons, args.synapses_per_neuron, args.cycles, args.device, args.compile,
                                       args.seed, backend=args.backend, threads=args.threads, warmup=args.warmup,
                                       shards=args.shards, partition=args.partition or "contiguous")))
            return 0
        if args.command == "run":
            return _run(args)
        if args.command == "feed":
            from .io.feed import feed_files

            feed_files(args.files, args.state_dir / "inbox")
            return 0
        if args.command == "status":
            from .ops.status import read_status

            print(json.dumps(read_status(args.state_dir), indent=2))
            return 0
        if args.command == "inspect":
            from .persistence.checkpoint import inspect_checkpoint

            print(json.dumps(inspect_checkpoint(args.path), indent=2))
            return 0
        if args.command == "plot":
            from .ops.plots import make_plots

            paths = make_plots(args.state_dir, args.out or args.state_dir / "plots")
            print(json.dumps({"plots": [str(p) for p in paths]}, indent=2))
            return 0
        if args.command == "soak":
            from .soak import run_soak

            result = run_soak(args.cycles, args.neurons, args.switch_every, args.sample_seconds, args.seed,
                              args.state_dir, args.config)
            print(json.dumps(result))
            if result["exit_code"] != 0:  # the JSON alone would hide a daemon that died
                log = Path(result["state_dir"]).parent / "daemon.log"
                print(f"fumd soak: the daemon exited with {result['exit_code']} (see {log})", file=sys.stderr)
                return 1
            return 0
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "probe":
            from .analysis.probe import probe_command

            return probe_command(args)
        if args.command == "config":
            from .daemon.config import default_toml

            print(default_toml(), end="")
            return 0
        return _demo(args)
    except FumdError as exc:
        print(f"fumd: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _run(args: argparse.Namespace) -> int:
    """``fumd run``: signal handling first (a SIGHUP or SIGTERM during the seconds of imports and
    restore must neither kill the process nor lose its state; see ``daemon/signals.py``)."""
    from .daemon.signals import SignalLatch

    signals = SignalLatch().install()
    finished = False
    try:
        from .daemon.config import load_config

        config = load_config(args.config, seed=args.seed)
        if signals.stop:  # stopped while reading the config: nothing started, nothing to save
            finished = True
            return 0
        from .daemon.service import run_daemon

        code = run_daemon(args.state_dir, config, args.config, args.exit_when_idle, signals=signals)
        finished = True
        return code
    finally:
        # a refused start gives the signals back (main() may run in-process); a daemon that ran
        # ignores them until the process is gone (the interpreter's finalisation would restore
        # the killing defaults)
        signals.finish() if finished else signals.restore()


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation import EvaluationError, run_evaluation
    from .evaluation.prequential import Options, load_mapping

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise EvaluationError(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
    if args.window < 1:
        raise EvaluationError("--window: must be >= 1")
    opts = Options(inputs=args.inputs, neurons=args.neurons, jobs=args.jobs == "on", learning=args.learning == "on",
                   force_deterministic=not args.nondeterministic, window=args.window, config=load_mapping(args.config))
    summary = run_evaluation(args.streams, seeds, opts, shift=args.shift, out=args.out, config_path=args.config,
                             progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    from .config import EngineConfig
    from .engine import Engine

    engine = Engine(EngineConfig().replace(network={"seed": args.seed}))
    rng = np.random.default_rng(args.seed)
    protos = rng.random((4, engine.config.network.input_size))
    window: list[bool] = []
    started = time.perf_counter()
    i = 0
    while not args.cycles or i < args.cycles:
        c = int(rng.integers(len(protos)))
        x = protos[c].copy()
        noisy = rng.random(x.shape) < 0.2
        x[noisy] = rng.random(int(noisy.sum()))
        result = engine.cycle({"id": str(i), "x": x, "label": f"class{c}"})
        window.append(bool(result.correct))
        i += 1
        if i % args.report_every == 0:
            print(json.dumps({
                "step": result.step, "accuracy": float(np.mean(window)), "rate_hz": result.rate_hz,
                "reward": result.total_reward, "novelty": result.novelty,
                "cycles_per_s": args.report_every / (time.perf_counter() - started),
            }), flush=True)
            window.clear()
            started = time.perf_counter()
    return 0


if __name__ == "__main__":
    sys.exit(main())
