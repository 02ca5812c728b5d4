"""`ptgen synth` on DiT-XL/2 at 256 px, on Stable Diffusion 1.5 at 512 px (`--generator sd15`), or
on BigGAN-deep at 256 px (`--generator biggan`): images/s against the bare network passes, FLOP
utilisation, and the share of the time the writer's encoders are busy.

A random-weight model with the published configs costs the same FLOPs as the real weights, so no
download is needed to measure speed:
  dit   DiT-XL/2 (depth 28, hidden 1152, 16 heads, patch 2, learned sigma, 1000 classes; latents
        4x32x32) and the Stable Diffusion VAE's config
  sd15  SD-1.5's UNet2DConditionModel (blocks 320/640/1280/1280, 2 layers a block, cross-attention
        768 wide, 8 heads; latents 4x64x64), its CLIP ViT-L/14 text encoder (768 wide, 12 layers,
        12 heads, 77 tokens, vocabulary 49408) and VAE; the tokenizer is a stand-in vocabulary of
        single characters, which changes no FLOP, since every prompt is padded to 77 tokens
  biggan BigGAN-deep 256 (pytorch-pretrained-biggan's layout: channel width 128, 128-d noise and
        class embedding, 1000 classes; twelve GenBlocks, six of them upsampling 4 -> 256 px, with
        channel multipliers 16, 16, 8, 8, 4, 2, 1 and self-attention at 64 px, as in the BigGAN
        paper's BigGAN-deep table); one forward pass an image, no steps, no guidance
For each batch size, with and without --compile, one run measures:
  bare   the network passes (conditional and unconditional halves in one call) and the VAE
         decode alone, on random latents: the forward bound of the hardware
  synth  `ptgen synth`'s own loop over the same model (scheduler steps, per-sample seeds,
         uint8 conversion, encoding in --encode-workers' default pool in --image-format auto's
         format, tar writing on a thread), model loading excluded
  writer the encoders' busy share of synth's time: one core's encode time of this model's own
         images x synth's rate / the encoder threads (computed from measured rates)
and the FLOPs of one image (counted by torch's FlopCounterMode: the network at batch 2 for
guidance, times the steps, plus one VAE decode), hence the achieved FLOP/s against the GPU's
dense bf16 peak. Goals: synth >= 0.9 of bare; model FLOP utilisation >= 0.35. The text encoder of
sd15 runs once per class when the model loads, outside both timings.

    python -m benchmarks.gpu_synth                       # on a GPU (bf16, batches 32 and 128)
    python -m benchmarks.gpu_synth --generator sd15      # the same for SD-1.5
    python -m benchmarks.gpu_synth --generator biggan --no-compile   # BigGAN-deep 256
    python -m benchmarks.gpu_synth --generator biggan --tiny --device cpu --dtype fp32 --batches 4 --images 8 \
        --no-compile --section gpu_synth_biggan_cpu_proof          # its CPU proof run
    python -m benchmarks.gpu_synth --tiny --device cpu --dtype fp32 --batches 4,8 --images 16 --steps 2
                                                         # the CPU proof run: a tiny DiT, same code
    python -m benchmarks.gpu_synth --flops-only --device cpu --dtype fp32   # FLOPs and parameters of DiT-XL/2
    python -m benchmarks.gpu_synth --generator sd15 --flops-only --device cpu --dtype fp32   # ... of SD-1.5
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from benchmarks.common import table, write_section
from generate.backends.folder import vae_scale_factor

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


def build_sd15(folder: Path, tiny: bool) -> Path:
    """A StableDiffusionPipeline folder of random weights: SD-1.5's configs, or a tiny stand-in."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    if tiny:
        text = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
        unet = dict(sample_size=4, block_out_channels=(8, 16), layers_per_block=1, cross_attention_dim=32,
                    attention_head_dim=4, norm_num_groups=4)
        vae = dict(block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4, sample_size=8)
    else:
        text = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        unet = dict(sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
        vae = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=512)
    # A stand-in vocabulary (single characters) in CLIP's file format, under the real vocabulary size.
    tokens = folder.parent / "tokenizer-files"
    tokens.mkdir(parents=True, exist_ok=True)
    symbols = string.ascii_lowercase + string.digits + ".,'-"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update((token, i + 2) for i, token in enumerate([*symbols, *(s + "</w>" for s in symbols)]))
    (tokens / "vocab.json").write_text(json.dumps(vocab))
    (tokens / "merges.txt").write_text("#version: 0.2\n")
    (tokens / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
                                                bos_token_id=0, eos_token_id=1, pad_token_id=1, **text))
    down = ("CrossAttnDownBlock2D",) * (len(unet["block_out_channels"]) - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(unet["block_out_channels"]) - 1)
    blocks = len(vae["block_out_channels"])
    pipe = StableDiffusionPipeline(
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(tokens),
        unet=UNet2DConditionModel(in_channels=4, out_channels=4, down_block_types=down, up_block_types=up, **unet),
        vae=AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, scaling_factor=0.18215,
                          down_block_types=("DownEncoderBlock2D",) * blocks,
                          up_block_types=("UpDecoderBlock2D",) * blocks, **vae),
        scheduler=PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                                steps_offset=1, set_alpha_to_one=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


# BigGAN-deep at 256 px: (upsamples, input and output channel multipliers) of each GenBlock.
BIGGAN_DEEP_256 = [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
                   (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)]


def build_biggan(folder: Path, tiny: bool) -> Path:
    """A BigGAN folder of random weights (config.json and model.safetensors): BigGAN-deep 256, or a tiny stand-in."""
    from pytorch_pretrained_biggan import BigGAN, BigGANConfig
    from safetensors.torch import save_file

    torch.manual_seed(0)
    if tiny:
        config = BigGANConfig(output_dim=32, z_dim=8, class_embed_dim=8, channel_width=4, num_classes=1000,
                              layers=[(True, 16, 8), (True, 8, 4), (True, 4, 2), (False, 2, 1)],
                              attention_layer_position=3)
    else:
        config = BigGANConfig(output_dim=256, z_dim=128, class_embed_dim=128, channel_width=128, num_classes=1000,
                              layers=BIGGAN_DEEP_256, attention_layer_position=8, eps=1e-4, n_stats=51)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(config.to_json_string())
    save_file({k: v.contiguous() for k, v in BigGAN(config).state_dict().items()}, str(folder / "model.safetensors"))
    return folder


def gan_pass(gen, rows: int) -> None:
    z = torch.randn(rows, gen.config.z_dim, device=gen.device, dtype=gen.dtype)
    gen.model(z, gen.class_vectors(torch.arange(rows) % gen.num_classes), gen._model_truncation)


def dit_pass(gen, x: torch.Tensor) -> None:
    labels = torch.arange(len(x), device=gen.device) % gen.num_classes
    gen.transformer(x, timestep=torch.full((len(x),), 500, device=gen.device), class_labels=labels)


def unet_pass(gen, x: torch.Tensor) -> None:
    context = gen.prompt_embeddings(torch.arange(len(x)) % gen.num_classes, guided=False)
    gen.unet(x, torch.tensor(500, device=gen.device), encoder_hidden_states=context)


def class_names_file(work: Path, classes: int) -> dict:
    """--class-names for the sd15 model: `classes` names (how many classes changes no FLOP of an image)."""
    path = work / f"names-{classes}.txt"
    path.write_text("".join(f"class {i}\n" for i in range(classes)))
    return {"class_names": path}


@dataclass(frozen=True)
class Setup:
    """One model of the benchmark: how to build its folder, one network pass over latents, and the
    backend options (from the work folder and the number of classes) that load it."""

    build: Callable[[Path, bool], Path]
    network_pass: Callable[[object, torch.Tensor], None] | None  # a latent model's per-step pass; None: a GAN
    options: Callable[[Path, int], dict]
    title: str
    description: str


SETUPS = {
    "dit": Setup(build_dit, dit_pass, lambda work, classes: {}, "DiT-XL/2",
                 "DiT-XL/2 256 px, SD VAE (random weights, published configs)"),
    "sd15": Setup(build_sd15, unet_pass, class_names_file, "SD-1.5",
                  "Stable Diffusion 1.5 at 512 px: UNet, CLIP ViT-L/14 text encoder, VAE (random weights, "
                  "published configs)"),
    "biggan": Setup(build_biggan, None, lambda work, classes: {}, "BigGAN-deep",
                    "BigGAN-deep 256 px (random weights, the published layout)"),
}


def latents(gen, rows: int) -> torch.Tensor:
    size = gen.image_size // vae_scale_factor(gen.vae.config)
    return torch.randn(rows, 4, size, size, device=gen.device, dtype=gen.dtype)


def pass_flops(gen, setup: Setup) -> tuple[float, float]:
    """FLOPs of one network pass and of one VAE decode, for one image, by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    x = latents(gen, 1)
    with torch.inference_mode(), FlopCounterMode(display=False) as step:
        setup.network_pass(gen, x)
    with torch.inference_mode(), FlopCounterMode(display=False) as decode:
        gen.vae.decode(x)
    return step.get_total_flops(), decode.get_total_flops()


def image_flops(gen, setup: Setup, guided: bool, steps: int) -> float:
    """FLOPs of one image: `steps` network passes (two rows when guided) and one VAE decode, or a
    GAN's one forward pass."""
    if setup.network_pass is None:
        from torch.utils.flop_counter import FlopCounterMode

        with torch.inference_mode(), FlopCounterMode(display=False) as forward:
            gan_pass(gen, 1)
        return forward.get_total_flops()
    step, decode = pass_flops(gen, setup)
    return step * (2 if guided else 1) * steps + decode


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def bare(gen, setup: Setup, batch: int, steps: int, images: int) -> float:
    """Images/s of the network passes alone (guided: 2 x batch rows per network call; a GAN: its forward)."""
    done, start = 0, time.perf_counter()
    if setup.network_pass is None:
        while done < images:
            gan_pass(gen, batch)
            done += batch
        sync(gen.device)
        return done / (time.perf_counter() - start)
    x = latents(gen, 2 * batch)
    while done < images:
        for _ in range(steps):
            setup.network_pass(gen, x)
        gen.vae.decode(x[:batch] / gen.vae.config.scaling_factor)
        done += batch
    sync(gen.device)
    return done / (time.perf_counter() - start)


def synth(gen, folder: Path, out: Path, batch: int, steps: int, guidance: float, images: int, dtype: str,
          compiled: bool) -> float:
    """Images/s of ptgen synth's own loop (the runner, writing shards at its default format and
    encoders), model already loaded."""
    from generate.runner import default_encode_workers, generate_shards
    from generate.synth import SynthJob, SynthSettings
    from generate.writer import auto_format

    classes = min(gen.num_classes, images)
    settings = SynthSettings(model=str(folder), steps=steps, guidance=guidance, seed=0, shard_size=1000,
                             image_format=auto_format(gen.image_size, gen.channels), dtype=dtype, compiled=compiled,
                             batch_size=batch, class_ids=tuple(range(classes)), per_class=max(1, images // classes))
    stats = generate_shards(SynthJob(settings, gen), out, encode_workers=default_encode_workers(), progress=False)
    sync(gen.device)
    return stats.images_per_s


def encode_seconds(gen, steps: int, guidance: float) -> float:
    """One core's seconds to encode one of this model's images in --image-format auto's format."""
    from generate.writer import auto_format, encode_image

    fmt = auto_format(gen.image_size, gen.channels)
    images = gen.sample(torch.arange(8) % gen.num_classes, list(range(8)), steps, guidance)
    start = time.perf_counter()
    for image in images:
        encode_image(image, fmt)
    return (time.perf_counter() - start) / len(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", choices=list(SETUPS), default="dit",
                    help="the model: DiT-XL/2 (class-conditional) or Stable Diffusion 1.5 (text-to-image)")
    ap.add_argument("--tiny", action="store_true", help="a tiny model of the same kind (the CPU proof run)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--images", type=int, default=1024, help="images per timed measurement")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, help="[default: the model's own: 1.5 for DiT, 2.0 for SD]")
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--section", default="gpu_synth")
    ap.add_argument("--flops-only", action="store_true",
                    help="print the FLOPs of one image and the parameter count, and stop (runs on any device)")
    args = ap.parse_args()

    from generate.models import load_generator
    from generate.runner import default_encode_workers
    from generate.writer import auto_format

    setup = SETUPS[args.generator]
    work = Path(tempfile.mkdtemp(prefix="ptgen-gpu-synth-"))
    folder = setup.build(work / args.generator, args.tiny)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None) if args.dtype == "bf16" else None
    # One class is enough to count FLOPs, and spares a CPU the text encoder's pass over 1000 prompts.
    options = setup.options(work, 1 if args.flops_only else min(1000, args.images))
    if args.flops_only:
        gen = load_generator(str(folder), device=args.device, dtype=args.dtype, options=options)
        guidance = args.guidance if args.guidance is not None else gen.defaults.guidance
        if setup.network_pass is None:
            print(f"{setup.title} forward, one image: {image_flops(gen, setup, False, 1) / 1e9:.1f} GFLOP; "
                  f"{gen.parameter_count() / 1e6:.0f} M parameters")
            return
        step, decode = pass_flops(gen, setup)
        image = step * (2 if guidance > 1 else 1) * args.steps + decode
        print(f"{setup.title} network forward, one image: {step / 1e9:.1f} GFLOP; VAE decode: {decode / 1e9:.1f} "
              f"GFLOP; one image at {args.steps} steps, guidance {guidance}: {image / 1e12:.2f} TFLOP; "
              f"{gen.parameter_count() / 1e6:.0f} M parameters")
        return
    rows = []
    for compiled in (False,) if args.no_compile else (False, True):
        gen = load_generator(str(folder), device=args.device, dtype=args.dtype, options=options)
        guidance = args.guidance if args.guidance is not None else gen.defaults.guidance
        if compiled:
            gen.compile()
        flops = image_flops(gen, setup, guidance > 1, args.steps)
        writer = f"{default_encode_workers()} encoder threads, {auto_format(gen.image_size, gen.channels)}"
        for batch in map(int, args.batches.split(",")):
            # Warm-up at this shape (and compilation, when on), outside the timing.
            synth(gen, folder, work / f"warm-{compiled}-{batch}", batch, args.steps, guidance, batch,
                  args.dtype, compiled)
            bare(gen, setup, batch, 1, batch)
            rate_bare = bare(gen, setup, batch, args.steps, args.images)
            rate_synth = synth(gen, folder, work / f"synth-{compiled}-{batch}", batch, args.steps, guidance,
                               args.images, args.dtype, compiled)
            achieved = rate_synth * flops
            busy = encode_seconds(gen, args.steps, guidance) * rate_synth / default_encode_workers()
            rows.append([batch, "yes" if compiled else "no", f"{rate_bare:.1f}", f"{rate_synth:.1f}",
                         f"{rate_synth / rate_bare:.2f}", f"{achieved / 1e12:.3g}",
                         f"{achieved / peak:.2f}" if peak else "n/a", f"{busy:.2f}"])
            print(rows[-1], flush=True)
        del gen
    tiny = f"tiny {setup.title.split('-')[0]}"
    model = f"{tiny} (CPU proof run)" if args.tiny else setup.description
    title = (f"`benchmarks/gpu_synth.py`, CPU proof run (a {tiny}, not a GPU figure)" if args.tiny
             else f"GPU throughput of `ptgen synth` ({setup.title}) on {name}")
    note = (f"A {tiny}'s passes take microseconds, so its synth/bare ratio measures per-batch overheads "
            f"(scheduler, seeding, encoding), which weigh far less beside {setup.title}'s FLOPs per image "
            "(docs/gpu.md); this run shows that the script and the --compile path work. GPU figures: "
            "run it on a GPU.\n\n"
            if args.tiny else "")
    md = (f"### {title}\n\n{note}"
          f"Device: {name}; {model}; {args.dtype}; "
          f"{'one forward pass' if setup.network_pass is None else f'{args.steps} steps, guidance {guidance}'}; "
          f"{flops / 1e9:.4g} GFLOP per image (FlopCounterMode); {args.images} images per measurement.\n\n"
          + f"The writer: {writer}.\n\n"
          + table(["batch", "compile", "bare img/s", "synth img/s", "synth / bare", "achieved TFLOP/s",
                   f"MFU (of {peak / 1e12:.0f} TFLOP/s bf16)" if peak else "MFU", "encoders busy"], rows)
          + f"\n\nCommand: `python -m benchmarks.gpu_synth {' '.join(sys.argv[1:])}`\n")
    write_section(args.section, md)
    print(md)


if __name__ == "__main__":
    main()
