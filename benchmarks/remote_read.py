"""The training loader's rate from HTTP and from an S3 server against the same shards on local disk.

Both servers run on 127.0.0.1 as processes of their own, as a store would: `python -m http.server`
serving the shard folder, and moto's S3 server (`moto_server`) holding an upload of it. The loader
is pttrain's shard pipeline (training augmentation, batch 128) in a DataLoader with --workers
processes; each source is timed --repeats times, interleaved with the others, and the median
kept, so that all three see the same load on a shared machine.

    python -m benchmarks.remote_read [--images 8192] [--shard-size 512] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from benchmarks.common import run_tool, table, write_section
from benchmarks.train_loader import CLASSES, rate, save_random_model
from generate.models import builtin_info
from train.data.shards import CorruptCounter, ShardSet
from train.data.transforms import Preprocess
from train.models import default_image_size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(cmd: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not listen on 127.0.0.1:{port}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8192)
    ap.add_argument("--shard-size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ptgen-remote-"))
    local = tmp / "shards"
    if builtin_info("glyphs-1k")["installed"]:
        model, note = "builtin:glyphs-1k", "builtin:glyphs-1k, 2 sampling steps"
    else:
        model, note = str(save_random_model(tmp / "model", image_size=16)), "random 16x16 model"
    run_tool("generate", "synth", "--model", model, "--out", local, "--classes", CLASSES, "--per-class",
             args.images // CLASSES, "--shard-size", args.shard_size, "--steps", 2, "--quiet")

    http_port, s3_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{s3_port}"
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": endpoint})
    servers = [serve([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(tmp),
                      str(http_port)], http_port),
               serve([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], s3_port)]
    try:
        import s3fs

        fs = s3fs.S3FileSystem()
        fs.mkdir("bench")
        fs.put(str(local) + "/", "bench/shards", recursive=True)
        sources = {"local disk": str(local), "HTTP (http.server)": f"http://127.0.0.1:{http_port}/shards",
                   "S3 (moto_server)": "s3://bench/shards"}
        sets = {name: ShardSet(spec) for name, spec in sources.items()}
        first = sets["local disk"]
        transform = Preprocess(default_image_size(first.image_size), first.channels, (0.5,), (0.5,)).transform(True)

        def loader(data: ShardSet) -> DataLoader:
            pipe = data.pipeline(transform, args.batch, train=True, seed=0, with_labels=True,
                                 corrupt=CorruptCounter(False), batches_per_worker=10**6)
            return DataLoader(pipe, batch_size=None, num_workers=args.workers)

        rates: dict[str, list[float]] = {name: [] for name in sets}
        for data in sets.values():
            rate(loader(data), args.batch * 2)  # warm-up: imports, first connections
        for _ in range(args.repeats):
            for name, data in sets.items():
                rates[name].append(rate(loader(data), args.images))
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait()
    base = statistics.median(rates["local disk"])
    rows = [[name, f"{statistics.median(r):.0f}", " / ".join(f"{x:.0f}" for x in r),
             f"{statistics.median(r) / base:.2f}"] for name, r in rates.items()]
    md = f"""### Reading shards from HTTP and S3

Command: `python -m benchmarks.remote_read --images {args.images} --shard-size {args.shard_size} --workers
{args.workers} --repeats {args.repeats}`. {first.count} images from {note}, {first.image_size} px
{first.header.get('image_format')}, in {len(first.paths)} shards of {args.shard_size}; pttrain's shard
pipeline with training augmentation at {default_image_size(first.image_size)} px, batch {args.batch},
{args.workers} loader workers, {os.cpu_count()} cores. The servers run on 127.0.0.1 as processes of
their own. Each source was timed {args.repeats} times, interleaved with the others; the ratio is the
median's against local disk's, measured in the same run, on a shared machine under load from other
jobs: single runs vary by up to a factor of 2, so read ratios near 1 as "no difference measured".

{table(["source", "images/s (median)", "each run", "ratio to local disk"], rows)}
"""
    write_section("remote_read", md)
    print(md)


if __name__ == "__main__":
    main()
