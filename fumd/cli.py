"""Command line: ``fumd bench`` and ``fumd run`` (until the daemon lands: the engine's demo run)."""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from .config import EngineConfig
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
    bench.add_argument("--seed", type=int, default=0)

    run = sub.add_parser("run", help="demo: run the perception-action loop on a synthetic labelled stream")
    run.add_argument("--state-dir", default="./state", help="state directory (used by the daemon, issue #3)")
    run.add_argument("--cycles", type=int, default=0, help="stop after this many cycles (0: run until interrupted)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--report-every", type=int, default=100)

    args = parser.parse_args(argv)
    try:
        if args.command == "bench":
            from .bench import run_bench

            print(json.dumps(run_bench(args.neurons, args.synapses_per_neuron, args.cycles, args.device, args.compile, args.seed)))
            return 0
        return _demo(args)
    except FumdError as exc:
        print(f"fumd: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _demo(args: argparse.Namespace) -> int:
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
