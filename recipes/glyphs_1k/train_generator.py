"""Train the glyphs-1k generator: a class-conditional diffusers UNet2DModel, on fresh renders.

    python -m recipes.glyphs_1k.train_generator --recipe small+template --minutes 60 \\
        --out runs/gen --classifier ptcommon/builtin/glyphs-1k/classifier

The training clock counts training steps only (evaluation and checkpoints pause it), so
candidates compare at equal training time. At each `--eval-at` minute the EMA weights are
exported and their class consistency measured; `evals.jsonl` holds the learning curve.
Rerunning the same command resumes from `checkpoint.pt`. The final model lands in `OUT/model`
in diffusers' folder layout (unet/ in fp16, scheduler/, ptgen.json, templates), which
`generate` loads as any other model folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from generate.models import load_generator

from .class_list import CLASSES_JSON, load_classes
from .classes import shipped_renderer
from .consistency import class_consistency, load_classifier
from .generator_recipe import CANDIDATES, GeneratorRecipe, class_means, pca_codes, templates
from .render import derive_seed

if TYPE_CHECKING:  # diffusers takes seconds to import, so the functions that use it import it themselves
    from diffusers import DDPMScheduler, UNet2DModel

NUM_TRAIN_TIMESTEPS = 1000
DATA_STREAM = 7  # renderer seed stream for generator training, apart from the classifier's


def build(recipe: GeneratorRecipe, num_classes: int, codes: torch.Tensor) -> tuple[UNet2DModel, DDPMScheduler]:
    import diffusers
    from diffusers import UNet2DModel

    unet = UNet2DModel(**recipe.unet_config(num_classes))
    with torch.no_grad():
        unet.class_embedding.weight.copy_(codes)
    unet.class_embedding.weight.requires_grad_(recipe.train_codes)
    noise = diffusers.DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"
    )
    return unet, noise


def export(
    unet: UNet2DModel, noise_scheduler: DDPMScheduler, recipe: GeneratorRecipe, names: list[str],
    tmpl: torch.Tensor | None, out: Path,
) -> Path:
    """Write a generator folder: fp16 weights (half the bytes; sampling upcasts), a DPM-Solver
    sampler with the training noise schedule, and ptgen.json with classes and defaults."""
    import diffusers
    from safetensors.torch import save_file

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    half = type(unet).from_config(unet.config)
    half.load_state_dict(unet.state_dict())
    half.to(torch.float16).save_pretrained(tmp / "unet")
    diffusers.DPMSolverMultistepScheduler.from_config(noise_scheduler.config).save_pretrained(tmp / "scheduler")
    meta = {
        "null_class": True,
        "class_names": names,
        "defaults": {"steps": recipe.sample_steps, "guidance": recipe.guidance},
        "recipe": recipe.as_dict(),
    }
    if tmpl is not None:
        save_file({"templates": tmpl.to(torch.float16).contiguous()}, tmp / "templates.safetensors")
        meta["template"] = "templates.safetensors"
    (tmp / "ptgen.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def train(args: argparse.Namespace) -> None:
    """Train (or resume) one candidate into `args.out`.

    Why not train/trainer.py: the denoising loss could be written as an `Algorithm`, but
    `Trainer` would change the model through the rest. This loop runs AdamW without weight decay
    at a constant rate after warm-up (Trainer: cosine decay), keeps diffusers' EMAModel with its
    own warm-up (power 2/3) where Trainer's timm EMA has a fixed decay, budgets minutes of
    training steps with the clock paused at each `--eval-at` mark for an export and a class
    consistency check (Trainer: epochs x steps per epoch), and writes a diffusers model folder,
    not a run folder.
    """
    from diffusers.optimization import get_constant_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # the fp16 export cast warns about nothing we use
    torch.set_num_threads(args.threads)
    recipe = CANDIDATES[args.recipe]
    classes = load_classes(CLASSES_JSON)
    names = [c.name for c in classes]
    renderer = shipped_renderer(16)
    means = class_means(renderer)
    tmpl = templates(means) if recipe.template else None
    unet, noise = build(recipe, len(classes), pca_codes(means))
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    sched = get_constant_schedule_with_warmup(opt, recipe.warmup_steps)
    ema = EMAModel(unet.parameters(), decay=recipe.ema_max_decay, use_ema_warmup=True, power=2 / 3)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    step, train_s, done_marks = 0, 0.0, []
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True)
        if state["recipe"] != recipe.name:
            raise SystemExit(f"{ckpt_path} belongs to recipe {state['recipe']}, not {recipe.name}")
        unet.load_state_dict(state["unet"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        ema.load_state_dict(state["ema"])
        step, train_s, done_marks = state["step"], state["train_s"], state["marks"]
        print(f"resumed at step {step}, {train_s / 60:.1f} training minutes", flush=True)
    (out / "recipe.json").write_text(json.dumps(recipe.as_dict(), indent=1))

    classifier = load_classifier(args.classifier) if args.classifier else None
    alphas = noise.alphas_cumprod
    marks = sorted(set(args.eval_at) | {args.minutes})
    batches = renderer.batches(recipe.batch_size, derive_seed(DATA_STREAM, args.seed), start=step)
    last_ckpt = train_s

    def save_checkpoint() -> None:
        state = {"recipe": recipe.name, "unet": unet.state_dict(), "opt": opt.state_dict(),
                 "sched": sched.state_dict(), "ema": ema.state_dict(), "step": step, "train_s": train_s,
                 "marks": done_marks}
        torch.save(state, out / "checkpoint.tmp")
        os.replace(out / "checkpoint.tmp", ckpt_path)

    def evaluate(minute: float) -> None:
        ema.store(unet.parameters())
        ema.copy_to(unet.parameters())
        folder = export(unet, noise, recipe, names, tmpl, out / "model")
        ema.restore(unet.parameters())
        row = {"minutes": minute, "step": step, "images_seen": step * recipe.batch_size}
        if classifier is not None:
            gen = load_generator(str(folder))
            ids = list(range(0, len(classes), args.eval_every))
            result = class_consistency(gen, classifier[0], classifier[1], ids, args.eval_per_class,
                                       recipe.sample_steps, recipe.guidance)
            row.update(consistency=result.top1, eval_images=result.images, sample_images_per_s=result.images_per_s,
                       steps=recipe.sample_steps, guidance=recipe.guidance)
        with open(out / "evals.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    unet.train()
    while True:
        due = [m for m in marks if m not in done_marks and train_s >= m * 60]
        if due:
            save_checkpoint()
            evaluate(due[0])
            done_marks.append(due[0])
            save_checkpoint()
            if due[0] == args.minutes:
                break
            continue
        start = time.perf_counter()
        images, labels = next(batches)
        g = torch.Generator().manual_seed(derive_seed(DATA_STREAM, args.seed, step, 2))
        x0 = images.float().div_(127.5).sub_(1.0)
        drop = torch.rand(len(labels), generator=g) < recipe.label_dropout
        labels = torch.where(drop, torch.full_like(labels, len(classes)), labels)
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (len(labels),), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        xt = noise.add_noise(x0, eps, t)
        target = noise.get_velocity(x0, eps, t)
        inp = torch.cat([xt, tmpl[labels]], 1) if tmpl is not None else xt
        pred = unet(inp, t, class_labels=labels).sample
        snr = alphas[t] / (1 - alphas[t])
        weight = snr.clamp(max=recipe.min_snr_gamma) / (snr + 1)  # min-SNR weighting for v-prediction
        loss = (weight * F.mse_loss(pred, target, reduction="none").mean((1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema.step(unet.parameters())
        step += 1
        train_s += time.perf_counter() - start
        if step % 100 == 0:
            print(f"step {step}  {train_s / 60:.1f} min  loss {loss.item():.4f}", flush=True)
        if train_s - last_ckpt >= args.checkpoint_every:
            save_checkpoint()
            last_ckpt = train_s


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", choices=sorted(CANDIDATES), default="small+template")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=60.0, help="training minutes (the clock pauses for evals)")
    ap.add_argument("--eval-at", type=lambda s: [float(x) for x in s.split(",") if x], default=[10.0, 20.0, 40.0])
    ap.add_argument("--classifier", type=Path, help="classifier run folder for class consistency")
    ap.add_argument("--eval-every", type=int, default=5, help="evaluate every k-th class")
    ap.add_argument("--eval-per-class", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint-every", type=float, default=120.0, help="training seconds between checkpoints")
    train(ap.parse_args(argv))


if __name__ == "__main__":
    main()
