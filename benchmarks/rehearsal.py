"""ImageNet's size, rehearsed: what every step around the GPU costs as a folder of `--model
noise:1000x32` (1,000 classes of 32 px RGB noise, JPEG) grows from 10,000 to 1.3 million images
(1,300 a class at the top, ImageNet's size), on local disk and, up to --s3-max, on moto's S3 server
on loopback. None of it needs a GPU.

  run     for each of --sizes (images; 1,000 classes), into --root:
            synth    `ptgen synth` whole: wall time, time per image, peak RSS
            merge    the merge of the manifest parts (ShardFolder.merge, which also writes _info.json),
                     the best of 3
            inspect  `ptgen inspect` whole
            card     `ptgen card` whole
            resume   one shard deleted: the scan that finds it (ShardFolder.is_complete over every
                     shard, as a rerun makes it), then the rerun whole; only that shard may be written
                     again, with the same bytes
            pp       pttrain pp's start as pp makes it (open the shards, hold out, build the model, the
                     loader) to its first batch, then an epoch's batches with a model that costs nothing
            s3       (sizes up to --s3-max) the folder uploaded to moto's server, then the same as pp:
                     opening it (its listing), the first batch, the epoch's rate
          each step's figures kept in benchmarks/results/rehearsal.json as it ends, so a rerun resumes
          with the first step missing; the size's folder is deleted once its steps are kept
  split   how pttrain's loader spreads 1,300 shards over 64 ranks x 8 workers in an epoch, computed
          by the loader's own shard functions with each rank and worker set in the environment (no
          processes): evaluation's split, and training's deal
  report  the table, with each step's slope from the middle size to the top one, from the kept file

    python -m benchmarks.rehearsal run [--sizes 10000,100000,1300000] [--root runs/rehearsal] [--s3-max 100000]
    python -m benchmarks.rehearsal split [--shards 1300] [--ranks 64] [--workers 8]
    python -m benchmarks.rehearsal report [--doc FILE|-]

Timings need a machine with nothing else running; each step keeps the 1-minute load average
around it, and the report shows the highest.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

from benchmarks.common import RUNS, Kept, cli, doc_flag, flag, ints, run_tool, table, write_section

CLASSES = 1000
SPEC = f"noise:{CLASSES}x32"
BATCH = 128  # pttrain's default
STEPS = ("synth", "merge", "inspect", "card", "resume", "pp", "s3")
# Goals at the top size (docs/results.md): seconds, and the RSS growth from the middle size.
GOAL_SECONDS = {"resume_scan": 10, "pp_first_batch": 10, "inspect": 30, "card": 30}
GOAL_RSS_GROWTH = 0.10


def load() -> float:
    return os.getloadavg()[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def loader_figures(spec: str | Path) -> dict:
    """pttrain pp's start on SPEC, as pp makes it, to its first batch; then the rest of an epoch's
    batches (pp's count: the training shards' images over the batch), read and dropped: a model that
    costs nothing."""
    from tqdm import tqdm

    from ptcommon.launcher import detect
    from train.cli import DEFAULT_ARCH
    from train.commands import TargetInfo, open_shards, pp_validation, prepare_model
    from train.data.loading import choose_workers, stream_batches
    from train.data.transforms import Preprocess

    # Forked loader workers, as under pttrain (a spawned interpreter, as `apart` makes, defaults to spawn).
    multiprocessing.set_start_method("fork", force=True)
    start = time.perf_counter()
    data = open_shards(str(spec), "--shards", labeled=True)
    opened = time.perf_counter() - start
    train, _, _ = pp_validation(data, None)
    _, config = prepare_model(TargetInfo.of_shards(data), "none", DEFAULT_ARCH, None)
    transform = Preprocess(config.image_size, config.in_chans, tuple(config.mean),
                           tuple(config.std)).transform(augment=True)
    workers = choose_workers(None, detect().cores)
    steps = max(1, train.count // BATCH)
    per_worker = math.ceil(steps / max(1, workers))

    def pipeline(epoch: int):
        return train.pipeline(transform, BATCH, train=True, seed=epoch, with_labels=True, corrupt=train.corrupt,
                              batches_per_worker=per_worker)

    batches = iter(stream_batches(pipeline, 0, 0, workers, False)(0))
    first = len(next(batches)[1])
    first_s = time.perf_counter() - start
    epoch_start, seen = time.perf_counter(), 0
    for _, labels in tqdm(batches, total=per_worker * max(1, workers) - 1, unit="batch", desc="epoch", mininterval=10):
        seen += len(labels)
    return {"open_s": opened, "first_batch_s": first_s, "images_per_s": seen / (time.perf_counter() - epoch_start),
            "images": first + seen, "workers": workers, "shards": len(train.paths)}


def apart(measured: Callable[[Path], dict], folder: Path) -> dict:
    """MEASURED(FOLDER) in a fresh interpreter, so that this process stays small: a child started
    from it (the tools run_tool times) reports as its peak RSS at least this process's, which the
    loader's imports and workers would raise above `ptgen synth`'s own."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measured, folder).result()


def complete(folder: Path) -> bool:
    return (folder / "manifest.parquet").exists()


def measure(size: int, args: argparse.Namespace, kept: Kept) -> None:
    """Every step at SIZE images not yet kept; the folder deleted once all are."""
    from generate.report import open_folder

    wanted = [s for s in STEPS if s != "s3" or size <= args.s3_max]
    todo = [s for s in wanted if f"{size}/{s}" not in kept.scores]
    folder = args.root / f"noise-{size}"
    synth_args = ["synth", "--model", SPEC, "--per-class", size // CLASSES, "--out", folder]

    def keep(step: str, before: float, **figures) -> None:
        kept.update({f"{size}/{step}": {**figures, "load": round(max(before, load()), 2)}})
        print(f"{size}/{step}: {figures}", flush=True)

    if not todo:
        return
    if "synth" in todo or not complete(folder):
        shutil.rmtree(folder, ignore_errors=True)
        before = load()
        ran = run_tool("generate", *synth_args)
        keep("synth", before, seconds=round(ran.seconds, 2), peak_rss_mb=round(ran.peak_rss_mb, 1),
             us_per_image=round(ran.seconds / size * 1e6, 1),
             folder_bytes=sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()))
    if "merge" in todo:  # it rewrites the same files: the best of 3, which load from other jobs lengthens least
        before = load()
        header, shards = open_folder(folder)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            assert shards.merge(header)
            times.append(time.perf_counter() - start)
        keep("merge", before, seconds=round(min(times), 3))
    for step in ("inspect", "card"):
        if step in todo:
            before = load()
            ran = run_tool("generate", step, folder)
            keep(step, before, seconds=round(ran.seconds, 2), peak_rss_mb=round(ran.peak_rss_mb, 1))
    if "resume" in todo:
        before, figures = resume(folder, synth_args)
        keep("resume", before, **figures)
    for step, measured in (("pp", loader_figures), ("s3", on_s3)):
        if step in todo:
            before = load()
            keep(step, before, **{k: round(v, 3) for k, v in apart(measured, folder).items()})
    if not args.keep:
        shutil.rmtree(folder)


def resume(folder: Path, synth_args: list) -> tuple[float, dict]:
    """Delete the middle shard; time the scan that finds it and the rerun that writes it again; check
    that nothing else was written and that its bytes came back."""
    from generate.report import open_folder

    before = load()
    _, shards = open_folder(folder)
    target = shards.plan.num_shards // 2
    victim = shards.shard_path(target)
    digest = sha256(victim)
    others = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.tar") if p != victim}
    victim.unlink()
    _, shards = open_folder(folder)
    start = time.perf_counter()
    found = [k for k in range(shards.plan.num_shards) if not shards.is_complete(k)]
    scan = time.perf_counter() - start
    ran = run_tool("generate", *synth_args, "--quiet")
    rewritten = [p.name for p in folder.glob("*.tar") if others.get(p.name) != p.stat().st_mtime_ns]
    return before, {"scan_s": round(scan, 3), "found": found == [target], "rerun_s": round(ran.seconds, 2),
                    "only_that_shard": rewritten == [victim.name], "same_bytes": sha256(victim) == digest}


def on_s3(folder: Path) -> dict:
    """FOLDER uploaded to moto's S3 server (a process of its own on 127.0.0.1), then `loader_figures` on it."""
    from benchmarks.train_data_path import free_port, serve

    port = free_port()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                       "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    server = serve([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port)
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem()
        fs.mkdir("rehearsal")
        start = time.perf_counter()
        fs.put(str(folder) + "/", f"rehearsal/{folder.name}", recursive=True)
        upload = time.perf_counter() - start
        return {"upload_s": upload, **loader_figures(f"s3://rehearsal/{folder.name}")}
    finally:
        server.terminate()
        server.wait()


def machine() -> dict:
    """The machine and the code version, for the report."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu if line.startswith("Model name")), platform.processor())
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") *
                                                                   os.sysconf("SC_PHYS_PAGES") / 2**30),
            "commit": commit}


def run(args: argparse.Namespace) -> None:
    kept = Kept("rehearsal")
    kept.update({"machine": machine(), "sizes": args.sizes, "s3_max": args.s3_max})
    for size in args.sizes:
        measure(size, args, kept)


def samples_read(yielded: int, bufsize: int, initial: int) -> int:
    """Samples a worker's shuffle stage (WebDataset's `shuffle(bufsize, initial)`, as pttrain's
    training pipeline has it) reads from its shards to yield YIELDED: two a yield while its buffer
    fills, one after."""
    read = held = out = 0
    while out < yielded:
        read, held = read + 1, held + 1
        if held < bufsize:
            read, held = read + 1, held + 1
        if held >= initial:
            held, out = held - 1, out + 1
    return read


def split(args: argparse.Namespace) -> None:
    """What one epoch reads over RANKS x WORKERS loader workers, computed from the loader's own shard
    stages as each worker would run them (no processes): evaluation's split (each shard once, dealt
    to ranks, then workers, by WebDataset's stages), and training's deal (train.data.shards
    `dealt_shards`) for pp's epoch of SHARDS x 1,000 images at batch 128, each worker's share of a
    round shuffled on its own (a round's images all come out before the next round's)."""
    import webdataset as wds

    from train.data.shards import SHUFFLE_BUFFER, dealt_shards

    urls = [f"synth-{k:06d}.tar" for k in range(args.shards)]
    shard_size, images, slots = 1000, args.shards * 1000, args.ranks * args.workers
    need = math.ceil(images // (BATCH * args.ranks) / args.workers) * BATCH  # pp's images a worker
    evaluated = [0] * args.shards
    this_round = next_rounds = opened = 0
    saved = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "WORKER", "NUM_WORKERS")}
    try:
        for rank in range(args.ranks):
            for worker in range(args.workers):
                os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(args.ranks), "WORKER": str(worker),
                                   "NUM_WORKERS": str(args.workers)})
                for url in wds.split_by_worker(wds.split_by_node(iter(urls))):
                    evaluated[int(url[6:12])] += 1
                left = need
                for round_, group in dealt_shards(args.shards, 0, rank * args.workers + worker, slots):
                    taken = min(left, len(group) * shard_size)
                    this_round, next_rounds = this_round + taken * (round_ == 0), next_rounds + taken * (round_ > 0)
                    read = len(group) * shard_size if taken == len(group) * shard_size else samples_read(
                        taken, SHUFFLE_BUFFER, SHUFFLE_BUFFER // 2)
                    opened, left = opened + math.ceil(min(read, len(group) * shard_size) / shard_size), left - taken
                    if not left:
                        break
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    kept = Kept("rehearsal")
    kept.update({"split": {"shards": args.shards, "ranks": args.ranks, "workers": args.workers,
                           "eval_exactly_once": all(n == 1 for n in evaluated), "train_images": need * slots,
                           "train_from_this_round": this_round, "train_from_next_round": next_rounds,
                           "train_shards_opened": opened}})
    print(kept.scores["split"])


def slope(low: float | None, high: float | None, n_low: int, n_high: int) -> str:
    """d log(value) / d log(images): 1 grows as the images do, 0 stays flat."""
    if not low or not high:
        return "—"
    return f"{math.log(high / low) / math.log(n_high / n_low):.2f}"


def report(args: argparse.Namespace) -> None:
    kept = Kept("rehearsal")
    s, sizes = kept.scores, kept.scores["sizes"]
    low, high = sizes[-2], sizes[-1]

    def get(size: int, step: str, key: str):
        return s.get(f"{size}/{step}", {}).get(key)

    def row(label: str, step: str, key: str, fmt: str, goal: str = "—", sloped: bool = True,
            scale: float = 1) -> list:
        values = [get(n, step, key) for n in sizes]
        cells = [("yes" if v else "NO") if isinstance(v, bool) else "—" if v is None else format(v * scale, fmt)
                 for v in values]
        return [label, *cells, slope(get(low, step, key), get(high, step, key), low, high) if sloped else "—", goal]

    rss_low, rss_high = get(low, "synth", "peak_rss_mb"), get(high, "synth", "peak_rss_mb")
    rss = f"{rss_high / rss_low - 1:+.1%} from {low:,}" if rss_low and rss_high else "—"
    rows = [
        row("`ptgen synth`, whole command, s", "synth", "seconds", ".1f", "slope <= 1"),
        row("... per image, µs", "synth", "us_per_image", ".0f", sloped=False),
        row("... peak RSS, MB", "synth", "peak_rss_mb", ".0f", f"within 10% ({rss})", sloped=False),
        row("... folder on disk, GB", "synth", "folder_bytes", ".3g", sloped=False, scale=1e-9),
        row("merge of the manifest parts (+ `_info.json`), s", "merge", "seconds", ".2f", "slope <= 1"),
        row("`ptgen inspect`, whole command, s", "inspect", "seconds", ".1f", "<= 30 s"),
        row("`ptgen card`, whole command, s", "card", "seconds", ".1f", "<= 30 s"),
        row("resume after one shard deleted: the scan, s", "resume", "scan_s", ".2f", "<= 10 s"),
        row("... the rerun, whole command, s", "resume", "rerun_s", ".1f", "slope <= 1"),
        row("... only that shard written again", "resume", "only_that_shard", "", "yes", sloped=False),
        row("... with the same bytes", "resume", "same_bytes", "", "yes", sloped=False),
        row("`pttrain pp` from disk: opening the folder, s", "pp", "open_s", ".2f", "slope <= 1"),
        row("... start to first batch, s", "pp", "first_batch_s", ".2f", "<= 10 s"),
        row("... an epoch's rate, model-free, img/s", "pp", "images_per_s", ".0f", sloped=False),
        row("`pttrain pp` from S3 (moto): opening the folder (listing), s", "s3", "open_s", ".2f", "slope <= 1"),
        row("... start to first batch, s", "s3", "first_batch_s", ".2f"),
        row("... an epoch's rate, model-free, img/s", "s3", "images_per_s", ".0f", sloped=False),
    ]
    loads = [max((v.get("load", 0) for k, v in s.items() if k.startswith(f"{n}/")), default=0) for n in sizes]
    rows.append(["highest 1-min load average around a step", *[f"{x:.1f}" for x in loads], "—", "—"])
    m, sp = s["machine"], s.get("split")
    split_line = "" if sp is None else (
        f"\n\nThe split of {sp['shards']:,} shards over {sp['ranks']} ranks x {sp['workers']} loader workers "
        f"(`python -m benchmarks.rehearsal split`): evaluation reads each image exactly once: "
        f"{'yes' if sp['eval_exactly_once'] else 'NO'}. Training deals each round's shards once over all "
        f"workers, so that every rank takes the same number of steps; its epoch of {sp['train_images']:,} images "
        f"takes {sp['train_from_this_round']:,} from the epoch's round, each once "
        f"({sp['train_from_this_round'] / (1000 * sp['shards']):.1%} of the folder), and "
        f"{sp['train_from_next_round']:,} from the next, where workers with fewer shards go on, in "
        f"{sp['train_shards_opened']:,} shard reads.")
    md = f"""Command: `python -m benchmarks.rehearsal run --sizes {','.join(map(str, sizes))} --s3-max {s['s3_max']}`,
then `split` and `report`. `ptgen synth --model {SPEC} --per-class N` for N x {CLASSES:,} images ({CLASSES:,} classes
of 32 px RGB noise, JPEG, shards of 1,000) on local disk; {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GiB; code
{m['commit']}. Whole commands include the interpreter's start and imports. pp: pttrain's defaults (resnet18
built, batch {BATCH}, one loader worker a core) and no training step. Slope: d log(value) / d log(images)
from {low:,} to {high:,} images; 1 grows as the images do.

{table(["step", *[f"{n:,} images" for n in sizes], f"slope {low:,} -> {high:,}", "goal"], rows)}{split_line}
"""
    write_section("rehearsal", md, args.doc)


def main() -> None:
    cli(__doc__,
        run=(run, [flag("--sizes", type=ints, default=[10_000, 100_000, 1_300_000]),
                   flag("--root", type=Path, default=RUNS / "rehearsal", help="where the folders are written"),
                   flag("--s3-max", type=int, default=100_000, help="the largest size also read from S3"),
                   flag("--keep", action="store_true", help="keep each size's folder")]),
        split=(split, [flag("--shards", type=int, default=1300), flag("--ranks", type=int, default=64),
                       flag("--workers", type=int, default=8)]),
        report=(report, [doc_flag()]))


if __name__ == "__main__":
    main()
