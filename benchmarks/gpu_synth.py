"""`ptgen synth` on DiT-XL/2 at 256 px: images/s against the bare network passes, and FLOP utilisation.

A random-weight DiT-XL/2 with the published config (depth 28, hidden 1152, 16 heads, patch 2,
learned sigma, 1000 classes; latents 4x32x32) and the Stable Diffusion VAE's config costs the
same FLOPs as the real weights, so no download is needed to measure speed. For each batch size,
with and without --compile, one run measures:
  bare   the transformer passes (conditional and unconditional halves in one call) and the VAE
         decode alone, on random latents: the forward bound of the hardware
  synth  `ptgen synth`'s own loop over the same model (scheduler steps, per-sample seeds,
         uint8 conversion, PNG encoding and tar writing on a thread), model loading excluded
and the FLOPs of one image (counted by torch's FlopCounterMode: the transformer at batch 2 for
guidance, times the steps, plus one VAE decode), hence the achieved FLOP/s against the GPU's
dense bf16 peak. Goals: synth >= 0.9 of bare; model FLOP utilisation >= 0.35.

    python -m benchmarks.gpu_synth                       # on a GPU (bf16, batches 32 and 128)
    python -m benchmarks.gpu_synth --tiny --device cpu --dtype fp32 --batches 4,8 --images 16 --steps 2
                                                         # the CPU proof run: a tiny DiT, same code
    python -m benchmarks.gpu_synth --flops-only --device cpu --dtype fp32   # FLOPs and parameters of DiT-XL/2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import table, write_section

# Dense bf16 tensor-core peaks from the vendors' data sheets (SXM parts), FLOP/s.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12}


def build_dit(folder: Path, tiny: bool) -> Path:
    """A DiTPipeline folder of random weights: DiT-XL/2 + the SD VAE, or a tiny stand-in."""
    from diffusers import AutoencoderKL, DiTPipeline, DiTTransformer2DModel, DPMSolverMultistepScheduler

    torch.manual_seed(0)
    if tiny:
        dit = dict(sample_size=4, num_layers=2, num_attention_heads=2, attention_head_dim=8)
        vae = dict(block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4, sample_size=8)
    else:
        dit = dict(sample_size=32, num_layers=28, num_attention_heads=16, attention_head_dim=72)
        vae = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=256)
    transformer = DiTTransformer2DModel(patch_size=2, in_channels=4, out_channels=8, num_embeds_ada_norm=1000,
                                        norm_type="ada_norm_zero", **dit)
    blocks = len(vae["block_out_channels"])
    autoencoder = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, scaling_factor=0.18215,
                                down_block_types=("DownEncoderBlock2D",) * blocks,
                                up_block_types=("UpDecoderBlock2D",) * blocks, **vae)
    DiTPipeline(transformer=transformer, vae=autoencoder,
                scheduler=DPMSolverMultistepScheduler(num_train_timesteps=1000)).save_pretrained(folder)
    return folder


def pass_flops(gen) -> tuple[float, float]:
    """FLOPs of one transformer pass and of one VAE decode, for one image, by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    size = gen.transformer.config.sample_size
    x = torch.randn(1, 4, size, size, device=gen.device, dtype=gen.dtype)
    labels = torch.zeros(1, dtype=torch.long, device=gen.device)
    with torch.inference_mode(), FlopCounterMode(display=False) as step:
        gen.transformer(x, timestep=torch.full((1,), 500, device=gen.device), class_labels=labels)
    with torch.inference_mode(), FlopCounterMode(display=False) as decode:
        gen.vae.decode(x)
    return step.get_total_flops(), decode.get_total_flops()


def image_flops(gen, guided: bool, steps: int) -> float:
    """FLOPs of one image: `steps` transformer passes (two rows when guided) and one VAE decode."""
    step, decode = pass_flops(gen)
    return step * (2 if guided else 1) * steps + decode


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def bare(gen, batch: int, steps: int, images: int) -> float:
    """Images/s of the network passes alone (guided: 2 x batch rows per transformer call)."""
    size = gen.transformer.config.sample_size
    x = torch.randn(2 * batch, 4, size, size, device=gen.device, dtype=gen.dtype)
    labels = torch.arange(2 * batch, device=gen.device) % 1000
    t = torch.full((2 * batch,), 500, device=gen.device)
    done, start = 0, time.perf_counter()
    while done < images:
        for _ in range(steps):
            gen.transformer(x, timestep=t, class_labels=labels)
        gen.vae.decode(x[:batch] / gen.vae.config.scaling_factor)
        done += batch
    sync(gen.device)
    return done / (time.perf_counter() - start)


def synth(gen, folder: Path, out: Path, batch: int, steps: int, guidance: float, images: int, dtype: str,
          compiled: bool) -> float:
    """Images/s of ptgen synth's own loop (the runner, writing shards), model already loaded."""
    from generate.runner import generate_shards
    from generate.synth import SynthJob, SynthSettings

    classes = min(1000, images)
    settings = SynthSettings(model=str(folder), steps=steps, guidance=guidance, seed=0, shard_size=1000,
                             image_format="png", dtype=dtype, compiled=compiled, batch_size=batch,
                             class_ids=tuple(range(classes)), per_class=max(1, images // classes))
    stats = generate_shards(SynthJob(settings, gen), out, progress=False)
    sync(gen.device)
    return stats.images_per_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="a tiny DiT instead of DiT-XL/2 (the CPU proof run)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--images", type=int, default=1024, help="images per timed measurement")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=1.5)
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--section", default="gpu_synth")
    ap.add_argument("--flops-only", action="store_true",
                    help="print the FLOPs of one image and the parameter count, and stop (runs on any device)")
    args = ap.parse_args()

    from generate.models import load_generator

    work = Path(tempfile.mkdtemp(prefix="ptgen-gpu-synth-"))
    folder = build_dit(work / "dit", args.tiny)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None) if args.dtype == "bf16" else None
    if args.flops_only:
        gen = load_generator(str(folder), device=args.device, dtype=args.dtype)
        step, decode = pass_flops(gen)
        image = step * (2 if args.guidance > 1 else 1) * args.steps + decode
        print(f"transformer forward, one image: {step / 1e9:.1f} GFLOP; VAE decode: {decode / 1e9:.1f} GFLOP; "
              f"one image at {args.steps} steps, guidance {args.guidance}: {image / 1e12:.2f} TFLOP; "
              f"{gen.parameter_count() / 1e6:.0f} M parameters")
        return
    rows = []
    for compiled in (False,) if args.no_compile else (False, True):
        gen = load_generator(str(folder), device=args.device, dtype=args.dtype)
        if compiled:
            gen.compile()
        flops = image_flops(gen, args.guidance > 1, args.steps)
        for batch in map(int, args.batches.split(",")):
            # Warm-up at this shape (and compilation, when on), outside the timing.
            synth(gen, folder, work / f"warm-{compiled}-{batch}", batch, args.steps, args.guidance, batch,
                  args.dtype, compiled)
            bare(gen, batch, 1, batch)
            rate_bare = bare(gen, batch, args.steps, args.images)
            rate_synth = synth(gen, folder, work / f"synth-{compiled}-{batch}", batch, args.steps, args.guidance,
                               args.images, args.dtype, compiled)
            achieved = rate_synth * flops
            rows.append([batch, "yes" if compiled else "no", f"{rate_bare:.1f}", f"{rate_synth:.1f}",
                         f"{rate_synth / rate_bare:.2f}", f"{achieved / 1e12:.3g}",
                         f"{achieved / peak:.2f}" if peak else "n/a"])
            print(rows[-1], flush=True)
        del gen
    model = "tiny DiT (CPU proof run)" if args.tiny else "DiT-XL/2 256 px, SD VAE (random weights, published configs)"
    title = ("`benchmarks/gpu_synth.py`, CPU proof run (a tiny DiT, not a GPU figure)" if args.tiny
             else f"GPU throughput of `ptgen synth` (DiT-XL/2) on {name}")
    note = ("A tiny DiT's passes take microseconds, so its synth/bare ratio measures per-batch overheads "
            "(scheduler, seeding, PNG encoding), which weigh far less beside DiT-XL/2's 12 TFLOP per image "
            "(computed, docs/gpu.md); this run shows that the script and the --compile path work. GPU figures: "
            "run it on a GPU.\n\n"
            if args.tiny else "")
    md = (f"### {title}\n\n{note}"
          f"Device: {name}; {model}; {args.dtype}; {args.steps} steps, guidance {args.guidance}; "
          f"{flops / 1e9:.4g} GFLOP per image (FlopCounterMode); {args.images} images per measurement.\n\n"
          + table(["batch", "compile", "bare img/s", "synth img/s", "synth / bare", "achieved TFLOP/s",
                   f"MFU (of {peak / 1e12:.0f} TFLOP/s bf16)" if peak else "MFU"], rows)
          + f"\n\nCommand: `python -m benchmarks.gpu_synth {' '.join(sys.argv[1:])}`\n")
    write_section(args.section, md)
    print(md)


if __name__ == "__main__":
    main()
