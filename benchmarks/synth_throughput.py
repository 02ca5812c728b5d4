"""How fast `ptgen synth` and `ptgen pseudo` write shards, against the generator's bare passes.

  builtin  a generator on this machine (the built-in one unless --model names another SPEC), at its
           own sampling defaults unless --steps / --guidance say otherwise:
             bare       its sampling (`Generator.sample`) on in-memory batches, by batch size
             synth      `ptgen synth`'s loop end to end (sampling, PNG encoding, tar writing, manifest)
             per-image  a first script's loop: one image a call, encoded, written as a PNG file
           and the peak RSS of whole `ptgen synth` processes at 1x and 10x the images (does memory grow?)
  pseudo   `ptgen pseudo` on the digits target (its train/ images as conditions) against `ptgen synth`
           of as many images, whole commands: what the classifier's pass and the soft labels cost
  gpu      `ptgen synth` on DiT-XL/2 at 256 px (--generator dit), Stable Diffusion 1.5 at 512 px
           (sd15) or BigGAN-deep at 256 px (biggan): images/s against the bare network passes, FLOP
           utilisation, and the share of the time the writer's encoders are busy
  flops    the FLOPs of one image of the same models and the parameters it runs through; any device

A random-weight model in the published configs costs the FLOPs of the real weights, so `gpu` and
`flops` need no download (--tiny: a tiny model of the same kind, for the CPU proof run):
  dit    DiT-XL/2 (depth 28, hidden 1152, 16 heads, patch 2, learned sigma, 1000 classes; latents
         4x32x32) and the Stable Diffusion VAE's config
  sd15   SD-1.5's UNet2DConditionModel (blocks 320/640/1280/1280, 2 layers a block, cross-attention
         768 wide, 8 heads; latents 4x64x64), its CLIP ViT-L/14 text encoder (768 wide, 12 layers,
         12 heads, 77 tokens, vocabulary 49408) and VAE; the tokenizer is a stand-in vocabulary of
         single characters, which changes no FLOP, since every prompt is padded to 77 tokens
  biggan BigGAN-deep 256 (pytorch-pretrained-biggan's layout: channel width 128, 128-d noise and
         class embedding, 1000 classes; twelve GenBlocks, six of them upsampling 4 -> 256 px, with
         channel multipliers 16, 16, 8, 8, 4, 2, 1 and self-attention at 64 px, as in the BigGAN
         paper's BigGAN-deep table); one forward pass an image, no steps, no guidance
For each batch size, with and without --compile, `gpu` measures:
  bare   the network passes (conditional and unconditional halves in one call) and the VAE
         decode alone, on random latents: the forward bound of the hardware
  synth  `ptgen synth`'s own loop over the same model (scheduler steps, per-sample seeds,
         uint8 conversion, encoding in --encode-workers' default pool in --image-format auto's
         format, tar writing on a thread), model loading excluded
  writer the encoders' busy share of synth's time: one core's encode time of this model's own
         images x synth's rate / the encoder threads (computed from measured rates)
and the FLOPs of one image (torch's FlopCounterMode: the network at batch 2 for guidance, times
the steps, plus one VAE decode), hence the achieved FLOP/s against the GPU's dense bf16 peak.
Goals: synth >= 0.9 of bare; model FLOP utilisation >= 0.35. The text encoder of sd15 runs once
per class when the model loads, outside both timings.

    python -m benchmarks.synth_throughput builtin [--images 1024] [--batches 32,64,128,256]
    python -m benchmarks.synth_throughput pseudo [--per-target 10]
    python -m benchmarks.synth_throughput gpu [--generator dit|sd15|biggan] [--no-compile]   # on a GPU
    python -m benchmarks.synth_throughput gpu --tiny --device cpu --dtype fp32 --batches 4,8 --images 64 \
        --steps 2 --section gpu_synth_cpu_proof            # the CPU proof run: a tiny DiT, same code
    python -m benchmarks.synth_throughput flops [--generator dit|sd15|biggan]   # on the CPU, in fp32
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import string
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Union

import torch

from benchmarks.common import cli, doc_flag, flag, ints, run_tool, table, write_section

if TYPE_CHECKING:
    from generate.backends.biggan import BigGANGenerator
    from generate.backends.dit import DiTGenerator
    from generate.backends.text_to_image import TextToImageGenerator
    from generate.generator import Generator

    LatentModel = Union[DiTGenerator, TextToImageGenerator]

# Dense bf16 tensor-core peaks from the vendors' data sheets (SXM parts), FLOP/s.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12}


def command_line() -> str:
    return " ".join(["python -m benchmarks.synth_throughput", *sys.argv[1:]])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def synth_rate(gen: Generator, model: str, out: Path, images: int, batch: int, steps: int, guidance: float, *,
               image_format: str = "png", dtype: str = "fp32", compiled: bool = False, encode_workers: int = 1) -> float:
    """Images/s of `ptgen synth`'s own loop (the runner and its writer) over GEN, already loaded."""
    from generate.runner import generate_shards
    from generate.synth import SynthJob, SynthSettings

    classes = min(gen.num_classes, images)
    settings = SynthSettings(model=model, steps=steps, guidance=guidance, seed=0, shard_size=1000,
                             image_format=image_format, dtype=dtype, compiled=compiled, batch_size=batch,
                             class_ids=tuple(range(classes)), per_class=max(1, images // classes))
    stats = generate_shards(SynthJob(settings, gen), out, encode_workers=encode_workers, progress=False)
    sync(gen.device)
    return stats.images_per_s


def sample_rate(gen: Generator, n: int, batch: int, steps: int, guidance: float) -> float:
    labels = torch.arange(n) % gen.num_classes
    start = time.perf_counter()
    for i in range(0, n, batch):
        gen.sample(labels[i : i + batch], list(range(i, min(i + batch, n))), steps, guidance)
    return n / (time.perf_counter() - start)


def per_image_rate(gen: Generator, n: int, out: Path, steps: int, guidance: float) -> float:
    from generate.writer import encode_image

    out.mkdir(parents=True)
    start = time.perf_counter()
    for i in range(n):
        image = gen.sample(torch.tensor([i % gen.num_classes]), [i], steps, guidance)[0]
        (out / f"{i}.png").write_bytes(encode_image(image, "png"))
    return n / (time.perf_counter() - start)


def folder_parameters(folder: Path) -> int:
    """Parameters in the safetensors files of a model's folder, read from their headers."""
    from safetensors import safe_open

    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            total += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())
    return total


def builtin(args: argparse.Namespace) -> None:
    from generate.models import load_generator

    tmp = Path(tempfile.mkdtemp(prefix="ptgen-bench-"))
    gen = load_generator(args.model)
    steps = args.steps or gen.defaults.steps
    guidance = args.guidance if args.guidance is not None else gen.defaults.guidance
    # The network each sampling step runs, in its subfolder where the model has one.
    network = gen.folder / gen.network
    params = folder_parameters(network if network.is_dir() else gen.folder)
    torch.manual_seed(0)
    sample_rate(gen, args.batch, args.batch, steps, guidance)  # warm-up

    batch_rows = []
    for b in args.batches:
        rate = sample_rate(gen, max(args.images // 2, b), b, steps, guidance)
        batch_rows.append([b, f"{rate:.1f}"])
        print(f"bare batch {b}: {rate:.1f} img/s", flush=True)

    rate_bare = sample_rate(gen, args.images, args.batch, steps, guidance)
    rate_synth = synth_rate(gen, args.model, tmp / "synth", args.images, args.batch, steps, guidance)
    rate_loop = per_image_rate(gen, args.loop_images, tmp / "loop", steps, guidance)
    print(f"bare {rate_bare:.1f}  synth {rate_synth:.1f}  loop {rate_loop:.1f} img/s", flush=True)

    # 1 step, so that 10x finishes quickly: the point is whether anything accumulates.
    per_class = max(1, args.mem_images // gen.num_classes)
    memory = [run_tool("generate", "synth", "--model", args.model, "--out", tmp / f"mem{k}", "--per-class",
                       per_class * k, "--steps", 1, "--batch-size", args.batch, "--quiet") for k in (1, 10)]
    print(f"peak RSS {memory[0].peak_rss_mb:.0f} MB at 1x, {memory[1].peak_rss_mb:.0f} MB at 10x", flush=True)

    n1 = per_class * gen.num_classes
    md = f"""
Model: {args.model}, {params / 1e6:.2f}M parameters, {gen.image_size}x{gen.image_size}x{gen.channels};
{steps} DPM-Solver steps, guidance {guidance}; {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}),
torch {torch.__version__}, {torch.get_num_threads()} threads. Command: `{command_line()}`.

Bare forward passes by batch size (picks the default `--batch-size`):

{table(["batch", "img/s"], batch_rows)}

End to end at batch {args.batch}, {args.images} images:

{table(["path", "img/s", "ratio"], [
    ["bare generator passes", f"{rate_bare:.1f}", "1.00"],
    ["`ptgen synth` end to end", f"{rate_synth:.1f}", f"{rate_synth / rate_bare:.2f} of bare"],
    ["per-image loop (batch 1, PNG file each)", f"{rate_loop:.1f}", f"synth is {rate_synth / rate_loop:.1f}x faster"],
])}

Peak resident memory of a whole `ptgen synth` process (1 step, so that 10x finishes quickly;
the point is whether anything accumulates):

{table(["images", "peak RSS (MB)", "wall (s)"], [[n1 * k, f"{m.peak_rss_mb:.0f}", f"{m.seconds:.1f}"]
                                                 for k, m in zip((1, 10), memory)])}

Growth from 1x to 10x: {memory[1].peak_rss_mb / memory[0].peak_rss_mb:.3f}x. Load average over the last 15 minutes
at the end of the run: {os.getloadavg()[2]:.2f} (2 = this benchmark alone on both cores).
"""
    write_section("synth_throughput", md, args.doc)


def pseudo(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ptgen-pseudo-"))
    run_tool("train", "data", "digits", "--out", tmp / "digits")
    targets = len(list((tmp / "digits" / "train").rglob("*.png")))
    count = targets * args.per_target
    pseudo_s = run_tool("generate", "pseudo", "--target", tmp / "digits", "--out", tmp / "pseudo",
                        "--per-target", args.per_target, "--quiet").seconds
    synth_s = run_tool("generate", "synth", "--classes", 100, "--per-class", count // 100, "--out", tmp / "synth",
                       "--quiet").seconds
    md = f"""Command: `{command_line()}`. Built-in model at its
defaults, batch 128, 2 cores; whole commands, each its own process (interpreter start, imports and model
loading included).
{targets} digits training images x {args.per_target} = {count} pseudo samples; synth makes the same count.

{table(["command", "images", "seconds, whole command"], [
    ["ptgen pseudo (classifier pass + soft-label sampling)", count, f"{pseudo_s:.1f}"],
    ["ptgen synth (hard labels)", count, f"{synth_s:.1f}"],
])}

Pseudo runs at {synth_s / pseudo_s:.2f} of synth's rate.
"""
    write_section("pseudo_throughput", md, args.doc)


def parameters(*modules: torch.nn.Module | None) -> int:
    return sum(p.numel() for module in modules if module is not None for p in module.parameters())


def build_dit(folder: Path, tiny: bool) -> int:
    """A DiTPipeline folder of random weights: DiT-XL/2 + the SD VAE, or a tiny stand-in; the
    parameters an image runs through (the transformer, the VAE's decoding half)."""
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
    return parameters(transformer, autoencoder.post_quant_conv, autoencoder.decoder)


def build_sd15(folder: Path, tiny: bool) -> int:
    """A StableDiffusionPipeline folder of random weights: SD-1.5's configs, or a tiny stand-in; the
    parameters an image runs through (the UNet, the VAE's decoding half)."""
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
    return parameters(pipe.unet, pipe.vae.post_quant_conv, pipe.vae.decoder)


# BigGAN-deep at 256 px: (upsamples, input and output channel multipliers) of each GenBlock.
BIGGAN_DEEP_256 = [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
                   (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)]


def build_biggan(folder: Path, tiny: bool) -> int:
    """A BigGAN folder of random weights (config.json and model.safetensors): BigGAN-deep 256, or a
    tiny stand-in; its parameters, all of which an image runs through."""
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
    model = BigGAN(config)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return parameters(model)


def gan_pass(gen: BigGANGenerator, rows: int) -> None:
    from generate.backends.biggan import stats_truncation

    z = torch.randn(rows, gen.config.z_dim, device=gen.device, dtype=gen.dtype)
    gen.model(z, gen.class_vectors(torch.arange(rows) % gen.num_classes),
              stats_truncation(gen.truncation, gen.config.n_stats))


def dit_pass(gen: DiTGenerator, x: torch.Tensor) -> None:
    labels = torch.arange(len(x), device=gen.device) % gen.num_classes
    gen.transformer(x, timestep=torch.full((len(x),), 500, device=gen.device), class_labels=labels)


def unet_pass(gen: TextToImageGenerator, x: torch.Tensor) -> None:
    context = gen.prompt_embeddings(torch.arange(len(x)) % gen.num_classes, guided=False)
    gen.unet(x, torch.tensor(500, device=gen.device), encoder_hidden_states=context)


def class_names_file(work: Path, classes: int) -> dict:
    """--class-names for the sd15 model: `classes` names (how many classes changes no FLOP of an image)."""
    path = work / f"names-{classes}.txt"
    path.write_text("".join(f"class {i}\n" for i in range(classes)))
    return {"class_names": path}


@dataclass(frozen=True)
class Setup:
    """One model: how to build its folder (returning the parameters an image runs through), one
    network pass over latents, and the backend options (from the work folder and the number of
    classes) that load it."""

    build: Callable[[Path, bool], int]
    network_pass: Callable[[LatentModel, torch.Tensor], None] | None  # a latent model's per-step pass; None: a GAN
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


def latents(gen: LatentModel, rows: int) -> torch.Tensor:
    from generate.backends.folder import vae_scale_factor

    size = gen.image_size // vae_scale_factor(gen.vae.config)
    return torch.randn(rows, 4, size, size, device=gen.device, dtype=gen.dtype)


def counted(work: Callable[[], object]) -> float:
    """FLOPs of WORK, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops()


def pass_flops(gen: LatentModel, setup: Setup) -> tuple[float, float]:
    """FLOPs of one network pass and of one VAE decode, for one image."""
    x = latents(gen, 1)
    return counted(lambda: setup.network_pass(gen, x)), counted(lambda: gen.vae.decode(x))


def image_flops(gen: Generator, setup: Setup, guided: bool, steps: int) -> float:
    """FLOPs of one image: `steps` network passes (two rows when guided) and one VAE decode, or a
    GAN's one forward pass."""
    if setup.network_pass is None:
        return counted(lambda: gan_pass(gen, 1))
    step, decode = pass_flops(gen, setup)
    return step * (2 if guided else 1) * steps + decode


@torch.inference_mode()
def bare_rate(gen: Generator, setup: Setup, batch: int, steps: int, images: int) -> float:
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


def encode_seconds(gen: Generator, steps: int, guidance: float) -> float:
    """One core's seconds to encode one of this model's images in --image-format auto's format."""
    from generate.writer import auto_format, encode_image

    fmt = auto_format(gen.image_size, gen.channels)
    images = gen.sample(torch.arange(8) % gen.num_classes, list(range(8)), steps, guidance)
    start = time.perf_counter()
    for image in images:
        encode_image(image, fmt)
    return (time.perf_counter() - start) / len(images)


def flops(args: argparse.Namespace) -> None:
    from generate.models import load_generator

    setup = SETUPS[args.generator]
    work = Path(tempfile.mkdtemp(prefix="ptgen-flops-"))
    params = setup.build(work / args.generator, args.tiny)
    # One class is enough to count FLOPs, and spares a CPU the text encoder's pass over 1000 prompts.
    gen = load_generator(str(work / args.generator), device=args.device, dtype=args.dtype,
                         options=setup.options(work, 1))
    if setup.network_pass is None:
        print(f"{setup.title} forward, one image: {image_flops(gen, setup, False, 1) / 1e9:.1f} GFLOP; "
              f"{params / 1e6:.0f} M parameters")
        return
    guidance = args.guidance if args.guidance is not None else gen.defaults.guidance
    step, decode = pass_flops(gen, setup)
    image = step * (2 if guidance > 1 else 1) * args.steps + decode
    print(f"{setup.title} network forward, one image: {step / 1e9:.1f} GFLOP; VAE decode: {decode / 1e9:.1f} "
          f"GFLOP; one image at {args.steps} steps, guidance {guidance}: {image / 1e12:.2f} TFLOP; "
          f"{params / 1e6:.0f} M parameters")


def gpu(args: argparse.Namespace) -> None:
    from generate.models import load_generator
    from generate.runner import default_encode_workers
    from generate.writer import auto_format

    setup = SETUPS[args.generator]
    work = Path(tempfile.mkdtemp(prefix="ptgen-gpu-synth-"))
    folder = work / args.generator
    setup.build(folder, args.tiny)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None) if args.dtype == "bf16" else None
    options = setup.options(work, min(1000, args.images))
    rows = []
    for compiled in (False,) if args.no_compile else (False, True):
        gen = load_generator(str(folder), device=args.device, dtype=args.dtype, options=options)
        guidance = args.guidance if args.guidance is not None else gen.defaults.guidance
        if compiled:
            gen.compile()
        per_image = image_flops(gen, setup, guidance > 1, args.steps)
        fmt = auto_format(gen.image_size, gen.channels)
        writer = f"{default_encode_workers()} encoder threads, {fmt}"
        shards = dict(image_format=fmt, dtype=args.dtype, compiled=compiled, encode_workers=default_encode_workers())
        for batch in args.batches:
            # Warm-up at this shape (and compilation, when on), outside the timing.
            synth_rate(gen, str(folder), work / f"warm-{compiled}-{batch}", batch, batch, args.steps, guidance, **shards)
            bare_rate(gen, setup, batch, 1, batch)
            rate_bare = bare_rate(gen, setup, batch, args.steps, args.images)
            rate_synth = synth_rate(gen, str(folder), work / f"synth-{compiled}-{batch}", args.images, batch, args.steps,
                                    guidance, **shards)
            achieved = rate_synth * per_image
            busy = encode_seconds(gen, args.steps, guidance) * rate_synth / default_encode_workers()
            rows.append([batch, "yes" if compiled else "no", f"{rate_bare:.1f}", f"{rate_synth:.1f}",
                         f"{rate_synth / rate_bare:.2f}", f"{achieved / 1e12:.3g}",
                         f"{achieved / peak:.2f}" if peak else "n/a", f"{busy:.2f}"])
            print(rows[-1], flush=True)
        del gen
    tiny = f"tiny {setup.title.split('-')[0]}"
    model = f"{tiny} (CPU proof run)" if args.tiny else setup.description
    note = (f"CPU proof run of a {tiny}, not a GPU figure. A {tiny}'s passes take microseconds, so its synth/bare ratio measures per-batch overheads "
            f"(scheduler, seeding, encoding), which weigh far less beside {setup.title}'s FLOPs per image "
            "(docs/gpu.md); this run shows that the script and the --compile path work. GPU figures: "
            "run it on a GPU.\n\n"
            if args.tiny else "")
    md = (f"{note}"
          f"Device: {name}; {model}; {args.dtype}; "
          f"{'one forward pass' if setup.network_pass is None else f'{args.steps} steps, guidance {guidance}'}; "
          f"{per_image / 1e9:.4g} GFLOP per image (FlopCounterMode); {args.images} images per measurement.\n\n"
          + f"The writer: {writer}.\n\n"
          + table(["batch", "compile", "bare img/s", "synth img/s", "synth / bare", "achieved TFLOP/s",
                   f"MFU (of {peak / 1e12:.0f} TFLOP/s bf16)" if peak else "MFU", "encoders busy"], rows)
          + f"\n\nCommand: `{command_line()}`\n")
    write_section(args.section, md, args.doc)


def model_flags(device: str, dtype: str) -> list:
    return [flag("--generator", choices=list(SETUPS), default="dit"),
            flag("--tiny", action="store_true", help="a tiny model of the same kind (the CPU proof run)"),
            flag("--device", default=device), flag("--dtype", default=dtype, choices=["bf16", "fp16", "fp32"]),
            flag("--steps", type=int, default=25),
            flag("--guidance", type=float, help="[default: the model's own: 1.5 for DiT, 2.0 for SD]")]


def main() -> None:
    cli(__doc__,
        builtin=(builtin, [
            flag("--model", default="builtin:glyphs-1k", help="generator SPEC"),
            flag("--images", type=int, default=1024, help="images for the bare and synth runs"),
            flag("--loop-images", type=int, default=64, help="images for the per-image loop"),
            flag("--steps", type=int, help="sampling steps (default: the model's own default)"),
            flag("--guidance", type=float, help="guidance scale (default: the model's own default)"),
            flag("--batches", type=ints, default=[32, 64, 128, 256], help="batch sizes to compare for the bare passes"),
            flag("--batch", type=int, default=128, help="batch for synth vs bare"),
            flag("--mem-images", type=int, default=2000, help="1x image count for the memory test"), doc_flag()]),
        pseudo=(pseudo, [flag("--per-target", type=int, default=10), doc_flag()]),
        gpu=(gpu, [*model_flags("cuda", "bf16"), flag("--batches", type=ints, default=[32, 128]),
                   flag("--images", type=int, default=1024, help="images per timed measurement"),
                   flag("--no-compile", action="store_true", help="eager only"),
                   flag("--section", default="gpu_synth", help="the section of docs/results.md to write"),
                   doc_flag()]),
        flops=(flops, model_flags("cpu", "fp32")))


if __name__ == "__main__":
    main()
