"""Where the writer packs samples into tar members (records, headers, manifest rows): in each
encoder's task, after its encodes, or in the writer thread while the encoders run their codecs
(what `generate.runner` does). Both give the same bytes. JPEG at quality 95 at 256 px on the photo
crops of `benchmarks/writer_ceiling.py`, with a generator that costs nothing, at each --workers,
in --rounds interleaved with the bare encode (the two placements in a new random order each
round), into the temporary folder; each ratio is the pooled rate over bare x workers.

    python -m benchmarks.writer_packing run --report    # on a quiet machine: about 5 minutes
    python -m benchmarks.writer_packing run --tiny --out runs/writer_packing-tiny.json   # proof, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import Iterator

import numpy as np

from benchmarks.common import ROOT, measurement_main, table, write_section
from benchmarks.writer_ceiling import Tally, bare_slice, photo_crops, pipeline_slice
from generate import runner
from generate.runner import pack_samples

DEFAULT_OUT = ROOT / "runs" / "writer_packing.json"
FORMAT = "jpg"
PLACEMENTS = ("writer thread", "encoders")


class _PackingInEncoders(runner._Writer):
    """The alternative: each encoder task packs the run it encoded; the writer thread only writes."""

    def _encode_run(self, indices: range, images: np.ndarray) -> tuple[bytes, list[dict]]:
        plan = self.folder.plan
        shard_name = plan.shard_name(indices.start // plan.shard_size)
        return pack_samples(self.job, self.image_format, shard_name, indices, super()._encode_run(indices, images))

    def _pack(self, shard: int, indices: range, encodings: list[Future]) -> tuple[bytes, list[dict]]:
        packed = [encoding.result() for encoding in encodings]
        return b"".join(samples for samples, _ in packed), [row for _, rows in packed for row in rows]


@contextlib.contextmanager
def placement(name: str) -> Iterator[None]:
    """The runner with its packing where `name` says, for the duration."""
    product = runner._Writer
    runner._Writer = product if name == "writer thread" else _PackingInEncoders
    try:
        yield
    finally:
        runner._Writer = product


def run(args: argparse.Namespace) -> None:
    crops = photo_crops()
    rounds, seconds = (1, 0.3) if args.tiny else (args.rounds, args.seconds)
    order = random.Random(0)
    bare = Tally()
    pipes = {(p, w): Tally() for p in PLACEMENTS for w in args.workers}
    per_round: dict[tuple[str, int], list[float]] = {key: [] for key in pipes}
    with tempfile.TemporaryDirectory(prefix="writer-packing-") as work:
        for r in range(rounds):
            _, rate = bare_slice(crops, FORMAT, None, seconds, bare)
            for w in args.workers:
                for p in order.sample(PLACEMENTS, len(PLACEMENTS)):
                    with placement(p):
                        got = pipeline_slice(crops, FORMAT, w, max(len(crops), int(rate * w * seconds)), Path(work),
                                             pipes[p, w])
                    per_round[p, w].append(got / (rate * w))
            print(f"round {r}: bare {rate:.0f} img/s; " + ", ".join(
                f"{p} at {w}: {ratios[-1]:.2f}" for (p, w), ratios in per_round.items()), flush=True)
    result = {"command": " ".join(["python -m benchmarks.writer_packing", *sys.argv[1:]]), "tiny": args.tiny,
              "rounds": rounds, "seconds_per_slice": seconds, "bare_per_core": bare.rate,
              "rows": [{"placement": p, "workers": w, "images_per_s": pipes[p, w].rate,
                        "of_bare_x_workers": pipes[p, w].rate / (bare.rate * w), "rounds": per_round[p, w],
                        # paired with the other placement in the same round: the machine's drift cancels
                        "minus_encoders": [a - b for a, b in zip(per_round[p, w], per_round["encoders", w])]}
                       for p in PLACEMENTS for w in args.workers]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    if args.report:
        report(args)


def report(args: argparse.Namespace) -> None:
    result = json.loads(args.out.read_text())
    rows = []
    for row in result["rows"]:
        diffs = row["minus_encoders"]
        paired = ("-" if row["placement"] == "encoders" else
                  f"{statistics.mean(diffs):+.3f} ({min(diffs):+.2f} to {max(diffs):+.2f}; "
                  f"{sum(d > 0 for d in diffs)} of {len(diffs)} rounds above)")
        rows.append([row["placement"], row["workers"], f"{row['images_per_s']:.1f}",
                     f"{row['of_bare_x_workers']:.3f}", f"{min(row['rounds']):.2f}-{max(row['rounds']):.2f}", paired])
    caveat = " **Tiny proof run: not a measurement.**" if result["tiny"] else ""
    write_section("writer_packing", f"""
### Where the writer packs tar members

JPEG at quality 95, 256 px photo crops, a generator that costs nothing; {result['rounds']} rounds of
{result['seconds_per_slice']:g} s slices, each round the bare encode in one thread
({result['bare_per_core']:.1f} images/s pooled) and then, at each worker count, both placements in
a random order, writing into the temporary folder. Command: `{result['command']}`.{caveat}
"Paired" is the round's ratio minus the same round's ratio with packing in the encoders (mean,
range, and how many rounds came out above).

{table(["packing in", "encode workers", "img/s", "of bare x workers", "by round", "paired against the encoders"],
       rows)}
""")


def run_args(r: argparse.ArgumentParser) -> None:
    r.add_argument("--tiny", action="store_true", help="one short round: proves the script, measures nothing")
    r.add_argument("--rounds", type=int, default=16)
    r.add_argument("--seconds", type=float, default=3.0, help="each slice's length")
    r.add_argument("--workers", type=lambda s: [int(w) for w in s.split(",")], default=[1, 2])


def main() -> None:
    measurement_main(__doc__, DEFAULT_OUT, run, report, run_args)


if __name__ == "__main__":
    main()
