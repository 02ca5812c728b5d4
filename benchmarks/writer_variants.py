"""The writer against two alternatives that give the same bytes, each in place of
`generate.runner`'s writer for the duration of its slices:

  packing in the encoders  each encoder task also packs the run it encoded into tar members
                           (records, headers, manifest rows); the writer thread only writes
  encoder processes        the encoders are processes, each with a GIL of its own, that read the
                           pixels from shared memory (a pickle would copy 192 kB an image through
                           a pipe) and hand back the encoded bytes; the writer thread packs

JPEG at quality 95 at 256 px on the photo crops of `benchmarks/writer_ceiling.py`, with a
generator that costs nothing, at each --workers, in --rounds interleaved with the bare encode (the
writer and the alternatives in a new random order each round), into the temporary folder. Each
ratio is the pooled rate over bare x workers, and each alternative is also paired with the writer
round by round, so that the machine's drift between rounds cancels. The CPU time counts every
thread of this process and the encoder processes.

    python -m benchmarks.writer_variants run --report    # on a quiet machine: about 8 minutes
    python -m benchmarks.writer_variants run --tiny --out runs/writer_variants-tiny.json   # proof, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import mmap
import multiprocessing
import random
import statistics
import sys
import tempfile
from concurrent.futures import Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Iterator

import numpy as np

from benchmarks.common import ROOT, measurement_main, table, write_section
from benchmarks.writer_ceiling import Tally, bare_slice, photo_crops, pipeline_slice
from generate import runner
from generate.runner import encode_images, pack_samples

DEFAULT_OUT = ROOT / "runs" / "writer_variants.json"
FORMAT = "jpg"
PRODUCT = "writer (the product)"


class _PackingInEncoders(runner._Writer):
    def _encode_run(self, indices: range, images: np.ndarray) -> tuple[bytes, list[dict]]:
        plan = self.folder.plan
        shard_name = plan.shard_name(indices.start // plan.shard_size)
        return pack_samples(self.job, self.image_format, shard_name, indices, super()._encode_run(indices, images))

    def _pack(self, shard: int, indices: range, encodings: list[Future]) -> tuple[bytes, list[dict]]:
        packed = [encoding.result() for encoding in encodings]
        return b"".join(samples for samples, _ in packed), [row for _, rows in packed for row in rows]


# The batches the encoder processes read their pixels from: an anonymous shared mapping, made
# before the processes fork so that they inherit it.
_ring: np.ndarray | None = None


def _encode_from_ring(slot: int, start: int, indices: range, image_format: str, quality: int | None) -> list[bytes]:
    """An encoder process's task: a run of the slot's images, from its `start`th."""
    return encode_images(image_format, quality, indices, _ring[slot, start : start + len(indices)])


class _EncoderProcesses(runner._Writer):
    # A slot for every batch the runner can have in flight (its queue, the writer's, the sampler's).
    slots = runner._QUEUE_DEPTH + 2

    def __init__(self, job: runner.Job, *args, **kwargs):
        super().__init__(job, *args, **kwargs)
        self.encoders.shutdown()
        global _ring
        g = job.generator
        shape = (self.slots, job.settings.batch_size, g.image_size, g.image_size, g.channels)
        _ring = np.frombuffer(mmap.mmap(-1, math.prod(shape)), np.uint8).reshape(shape)
        # fork, so that the processes inherit the ring; they start at the first task, which this
        # is, before the writer thread exists and before the runner's clock: their start-up (a
        # fork each) is left out of the rate.
        self.encoders = ProcessPoolExecutor(self.encode_workers, mp_context=multiprocessing.get_context("fork"))
        try:
            self.encoders.submit(int).result()
        except BaseException:
            self.encoders.shutdown(cancel_futures=True)
            raise
        self._batches, self._in_slot = 0, [[] for _ in range(self.slots)]

    def run(self) -> None:
        global _ring
        try:
            super().run()
        finally:
            _ring = None  # its processes are gone; the next slice maps its own

    def encode(self, indices: range, images: np.ndarray) -> list[Future]:
        slot = self._batches % self.slots
        self._batches += 1
        wait(self._in_slot[slot])  # the batch this slot held is encoded
        _ring[slot, : len(images)] = images
        run = -(-len(indices) // self.encode_workers)
        self._in_slot[slot] = [
            self.encoders.submit(_encode_from_ring, slot, i, indices[i : i + run], self.image_format, self.quality)
            for i in range(0, len(indices), run)]
        return self._in_slot[slot]


VARIANTS = {PRODUCT: runner._Writer, "packing in the encoders": _PackingInEncoders,
            "encoder processes": _EncoderProcesses}


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """The runner with the writer `name` says, for the duration."""
    product = runner._Writer
    runner._Writer = VARIANTS[name]
    try:
        yield
    finally:
        runner._Writer = product


def run(args: argparse.Namespace) -> None:
    crops = photo_crops()
    rounds, seconds = (1, 0.3) if args.tiny else (args.rounds, args.seconds)
    order = random.Random(0)
    bare = Tally()
    pipes = {(v, w): Tally() for v in VARIANTS for w in args.workers}
    per_round: dict[tuple[str, int], list[float]] = {key: [] for key in pipes}
    with tempfile.TemporaryDirectory(prefix="writer-variants-") as work:
        for r in range(rounds):
            _, rate = bare_slice(crops, FORMAT, None, seconds, bare)
            for w in args.workers:
                for v in order.sample(list(VARIANTS), len(VARIANTS)):
                    with variant(v):
                        got = pipeline_slice(crops, FORMAT, w, max(len(crops), int(rate * w * seconds)), Path(work),
                                             pipes[v, w])
                    per_round[v, w].append(got / (rate * w))
            print(f"round {r}: bare {rate:.0f} img/s; " + ", ".join(
                f"{v} at {w}: {ratios[-1]:.2f}" for (v, w), ratios in per_round.items()), flush=True)
    result = {"command": " ".join(["python -m benchmarks.writer_variants", *sys.argv[1:]]), "tiny": args.tiny,
              "rounds": rounds, "seconds_per_slice": seconds, "bare_per_core": bare.rate,
              "bare_cpu_s": bare.cpu_per_image,
              "rows": [{"variant": v, "workers": w, "images_per_s": pipes[v, w].rate, "cpu_s": pipes[v, w].cpu_per_image,
                        "of_bare_x_workers": pipes[v, w].rate / (bare.rate * w), "rounds": per_round[v, w],
                        "minus_product": [a - b for a, b in zip(per_round[v, w], per_round[PRODUCT, w])]}
                       for v in VARIANTS for w in args.workers]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    if args.report:
        report(args)


def report(args: argparse.Namespace) -> None:
    result = json.loads(args.out.read_text())
    rows = []
    for row in result["rows"]:
        diffs = row["minus_product"]
        paired = ("-" if row["variant"] == PRODUCT else
                  f"{statistics.mean(diffs):+.3f} ({min(diffs):+.2f} to {max(diffs):+.2f}; "
                  f"{sum(d > 0 for d in diffs)} of {len(diffs)} rounds above)")
        rows.append([row["variant"], row["workers"], f"{row['images_per_s']:.1f}", f"{row['of_bare_x_workers']:.3f}",
                     f"{min(row['rounds']):.2f}-{max(row['rounds']):.2f}", paired, f"{row['cpu_s'] * 1e3:.2f}"])
    caveat = " **Tiny proof run: not a measurement.**" if result["tiny"] else ""
    write_section("writer_variants", f"""
### The writer against its alternatives

JPEG at quality 95, 256 px photo crops, a generator that costs nothing; {result['rounds']} rounds of
{result['seconds_per_slice']:g} s slices, each round the bare encode in one thread
({result['bare_per_core']:.1f} images/s pooled, {result['bare_cpu_s'] * 1e3:.2f} ms of CPU an image)
and then, at each worker count, the writer and each alternative in a random order, writing into
the temporary folder. Command: `{result['command']}`.{caveat}
"Paired" is the round's ratio minus the same round's ratio of the writer (mean, range, and how
many rounds came out above). The CPU time counts every thread of the process and, for the
encoder processes, theirs.

{table(["writer", "encode workers", "img/s", "of bare x workers", "by round", "paired against the writer",
        "CPU ms per image"], rows)}
""")


def run_args(r: argparse.ArgumentParser) -> None:
    r.add_argument("--tiny", action="store_true", help="one short round: proves the script, measures nothing")
    r.add_argument("--rounds", type=int, default=12)
    r.add_argument("--seconds", type=float, default=3.0, help="each slice's length")
    r.add_argument("--workers", type=lambda s: [int(w) for w in s.split(",")], default=[1, 2])


def main() -> None:
    measurement_main(__doc__, DEFAULT_OUT, run, report, run_args)


if __name__ == "__main__":
    main()
