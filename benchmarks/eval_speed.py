"""Speed and memory of importance-sampled log p(x) (`tfvae.evaluation`) against its FLOP limit.

    python benchmarks/eval_speed.py                          # k = 5000, all 10,000 test images; ~10 minutes here
    python benchmarks/eval_speed.py --limit 500 --chunks 0 16 53 428 --repeats 3   # compare chunk sizes

Each measurement is a fresh process that evaluates the default preset's
model (784-400-20; a fresh one, or the latest checkpoint of --run-dir:
the speed does not depend on the weights) on the fixed test set, batch
100, then times a large float32 `tf.linalg.matmul`. The FLOP limit is the
decoder's matrix products, 2 (20*400 + 400*784) FLOP per image and draw,
at that matmul's rate. Chunk sizes are interleaved over --repeats rounds;
prints for each the median seconds, the ratio to the FLOP limit, images
per second and the peak resident memory (ru_maxrss) of its process.
Chunk 0 means `tfvae.evaluation`'s default. Writes them, every round's
measurements and the provenance (tools/provenance.py) to
benchmarks/results/eval_speed.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tools"))
import provenance  # tools/provenance.py: the GEMM rate, the results file's provenance


def decoder_flops(hidden: int = 400, latent: int = 20, pixels: int = 784) -> int:
    """Matrix-product FLOPs of the decoder for one draw of z."""
    return 2 * (latent * hidden + hidden * pixels)


def measure(k: int, limit: int, chunk: int, run_dir: str | None) -> dict:
    """One evaluation in this process: seconds, GEMM rate, peak memory."""
    import tensorflow as tf

    import tfvae
    from tfvae import evaluation, rundir
    from tfvae import model as model_lib

    experiment = tfvae.preset("mnist-bernoulli-20d")
    dataset = evaluation.fixed_test_set(experiment, batch_size=100, limit=limit)
    if run_dir:
        vae = rundir.restore_model(run_dir, (28, 28, 1))
    else:
        tf.random.set_seed(0)
        vae = model_lib.build(experiment.model, (28, 28, 1))
        vae(tf.zeros([1, 28, 28, 1]))
    started = time.perf_counter()
    results = evaluation.evaluate(vae, dataset, k=k, chunk=chunk or None)
    seconds = time.perf_counter() - started
    gflops = provenance.gemm_gflops()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "gflops": gflops, "peak_mib": peak_mib, "nll": results["nll"],
            "chunk": results["chunk"], "images": results["num_examples"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--limit", type=int, default=10000, help="test images (the first N)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[0], help="draws per chunk; 0: the default")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--run-dir", help="a trained default-preset run (default: a fresh model)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "eval_speed.json")
    parser.add_argument("--measure", type=int, metavar="CHUNK", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.k, args.limit, args.measure, args.run_dir)), flush=True)
        return 0

    rows = {chunk: [] for chunk in args.chunks}
    for repeat in range(args.repeats):
        for chunk in args.chunks:
            command = [sys.executable, __file__, "--k", str(args.k), "--limit", str(args.limit), "--measure", str(chunk)]
            if args.run_dir:
                command += ["--run-dir", args.run_dir]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            row = json.loads(output.strip().splitlines()[-1])
            row["limit_seconds"] = row["images"] * args.k * decoder_flops() / (row["gflops"] * 1e9)
            rows[chunk].append(row)
            print(f"round {repeat + 1}, chunk {row['chunk']}: {row['seconds']:.1f} s, FLOP limit "
                  f"{row['limit_seconds']:.1f} s ({row['gflops']:.0f} GFLOP/s), peak {row['peak_mib']:.0f} MiB, "
                  f"-log p(x) {row['nll']:.2f}", flush=True)
    summary = {}
    for chunk, values in rows.items():
        seconds = statistics.median(r["seconds"] for r in values)
        summary[str(values[0]["chunk"])] = {
            "median_seconds": seconds,
            "median_ratio_to_flop_limit": statistics.median(r["seconds"] / r["limit_seconds"] for r in values),
            "median_gflops": statistics.median(r["gflops"] for r in values),
            "images_per_second": values[0]["images"] / seconds,
            "peak_gib": max(r["peak_mib"] for r in values) / 1024,
            "rounds": values,
        }
    print(f"\nk = {args.k}, {rows[args.chunks[0]][0]['images']} images; medians over {args.repeats} round(s):")
    for chunk, numbers in summary.items():
        print(f"  chunk {int(chunk):4d}: {numbers['median_seconds']:7.1f} s, "
              f"{numbers['median_ratio_to_flop_limit']:.2f}x the FLOP limit, {numbers['images_per_second']:.0f} "
              f"images/s, peak memory {numbers['peak_gib']:.2f} GiB")
    provenance.write_json(args.out, {"k": args.k, "images": rows[args.chunks[0]][0]["images"],
                                     "decoder_flop_per_draw": decoder_flops(), "by_chunk": summary},
                          "benchmarks/eval_speed.py", argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
