"""The one training loop every pttrain command shares.

What differs between commands lives in an `Algorithm`: what a step's loss is (supervised
cross-entropy here, with label smoothing and mixup / CutMix; FixMatch, UDA and KD say only what
they change). The loop owns the rest: the optimiser (timm's create_optimizer_v2), cosine schedule
with warm-up, gradient accumulation and clipping, AMP, optional EMA, logs, checkpoints, resume. Every random draw of a step follows from (--seed, rank, step), so a resumed run
ends with the weights of an uninterrupted one (train/seeding.py). A run may also resume on another
number of processes: it goes on from the samples it has seen, with the same global batch
(--batch-size x processes x --accum-steps), so the schedule goes on unchanged.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from tqdm import tqdm

from ptcommon.cli import InputError
from ptcommon.outputs import tensor_bytes, write_atomically

from .distributed import Dist
from .runs import CHECKPOINT_FILE, METRICS_FILE, TENSORBOARD_DIR
from .seeding import seed_everything

CURVE_FILE = "curve.png"
# How often a run checkpoints and logs changes nothing it computes, so a resume may change them.
HARMLESS_TO_CHANGE = {"checkpoint_every", "log_every"}
# A resume may split the global batch otherwise (on another number of processes): it checks the product.
GLOBAL_BATCH_PARTS = {"batch_size", "accum_steps"}
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


# --opt names timm does not use alike: sgd is plain momentum SGD here, timm's "sgd" is Nesterov's.
OPT_ALIASES = {"sgd": "momentum"}


def lr_scaling(opt: str) -> str:
    """timm's rule for scaling a rate given per 256 images: by the square root of the batch ratio for
    adaptive optimizers (Adam's family, LAMB), linearly for the rest (SGD, LARS)."""
    return "sqrt" if any(kind in opt.lower() for kind in ("ada", "lamb")) else "linear"


@dataclass
class TrainSettings:
    epochs: int = 10
    min_steps: int = 0  # a floor on the optimizer steps: small data runs more epochs instead of too few steps
    batch_size: int = 128
    accum_steps: int = 1  # batches whose gradients one optimizer step sums, on every process
    lr: float = 2e-3  # the effective peak rate (from --lr, or from --lr-base and the global batch)
    weight_decay: float = 0.05
    opt: str = "adamw"
    lr_base: float | None = None  # --lr-base: the peak rate per 256 images of global batch
    wd_norm_bias: bool = True  # weight decay on norm weights and biases too (off: timm's parameter groups)
    clip_grad: float | None = None  # max global gradient norm
    smoothing: float = 0.0  # label smoothing of the supervised loss
    mixup: float = 0.0  # mixup's alpha (0: off)
    cutmix: float = 0.0  # CutMix's alpha (0: off)
    extra_weight: float | None = None  # --extra-weight: the extra labeled images' loss (None: no --extra-labeled)
    warmup_epochs: float = 1.0
    ema_decay: float = 0.0  # 0 turns EMA off
    checkpoint_every: int = 200  # steps
    log_every: int = 20  # steps
    seed: int = 0


def run_epochs(settings: TrainSettings, steps_per_epoch: int) -> int:
    """--epochs, raised until the run takes at least --min-steps optimizer steps.

    With 20 labeled images and batches of 64 an epoch is one step, so 30 epochs would be 30 steps in
    all and batch-norm statistics from a handful of them: the run would stop long before it fits.
    """
    return max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))


def effective_lr(settings: TrainSettings, global_batch: int) -> tuple[float, str]:
    """The peak learning rate a run takes, and how it was reached: --lr as given, or --lr-base scaled
    from 256 images to GLOBAL_BATCH by `lr_scaling`."""
    if settings.lr_base is None:
        return settings.lr, f"--lr {settings.lr:g}"
    rule = lr_scaling(settings.opt)
    ratio = global_batch / 256
    lr = settings.lr_base * (math.sqrt(ratio) if rule == "sqrt" else ratio)
    return lr, f"--lr-base {settings.lr_base:g} x {'sqrt(' if rule == 'sqrt' else '('}{global_batch}/256)"


def create_optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """--opt through timm's create_optimizer_v2; with --no-wd-norm-bias, timm's parameter groups keep
    weight decay off norm weights and biases. The defaults build torch's AdamW over every parameter
    at one weight decay."""
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(model, OPT_ALIASES.get(settings.opt, settings.opt), lr=settings.lr,
                               weight_decay=settings.weight_decay, filter_bias_and_bn=not settings.wd_norm_bias)


class Algorithm:
    """One step's loss. Subclasses override `loss` and say only what differs."""

    def loss(self, model: torch.nn.Module, batch, device: torch.device) -> tuple[torch.Tensor, dict]:
        """The loss, and figures to log (tensors, averaged on the device over a log interval)."""
        raise NotImplementedError

    def describe(self) -> str:
        """Its name and settings (numbers, strings), which a resumed run must share with its start."""
        simple = {k: v for k, v in sorted(vars(self).items()) if isinstance(v, (bool, int, float, str, type(None)))}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in simple.items())})"


class Supervised(Algorithm):
    """Cross-entropy on labeled batches (pseudo pre-training, fine-tuning, scratch); with `mixup`
    (timm's Mixup: mixup and/or CutMix, smoothing inside) the soft-target cross-entropy of mixed images."""

    def __init__(self, label_smoothing: float = 0.0, mixup=None):
        self.label_smoothing = label_smoothing
        self.mixup = mixup

    @classmethod
    def of(cls, settings: TrainSettings, num_classes: int) -> "Supervised":
        """The loss --smoothing, --mixup and --cutmix ask for (checked by `check_mixing`), with the extra
        labeled images' term where --extra-weight gives it one."""
        mixup = None
        if settings.mixup or settings.cutmix:
            from timm.data import Mixup

            mixup = Mixup(mixup_alpha=settings.mixup, cutmix_alpha=settings.cutmix,
                          label_smoothing=settings.smoothing, num_classes=num_classes)
        if settings.extra_weight:
            return WithExtra(settings.smoothing, mixup, settings.extra_weight)
        return cls(settings.smoothing, mixup)

    def inputs(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the model sees and what its logits answer: the batch as it is, or mixed (mixup / CutMix)
        with soft targets."""
        return (images, labels) if self.mixup is None else self.mixup(images, labels)

    def criterion(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.mixup is None:
            return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()

    def prepare(self, part, device: torch.device) -> tuple[torch.Tensor, Callable[[torch.Tensor], tuple[torch.Tensor, dict]]]:
        """A batch's labeled PART (images, labels) as what the model sees, and how its logits are scored:
        score(logits) -> (loss, figures to log)."""
        images, labels = part
        labels = torch.as_tensor(labels).to(device)
        inputs, targets = self.inputs(images.to(device), labels)

        def score(logits: torch.Tensor) -> tuple[torch.Tensor, dict]:
            return self.criterion(logits, targets), {"train_top1": (logits.argmax(1) == labels).float().mean()}

        return inputs, score

    def loss(self, model, batch, device):
        inputs, score = self.prepare(batch, device)
        return score(model(inputs))


class WithExtra(Supervised):
    """Supervised, plus a second labeled batch of extra (synthetic) images beside each target batch:
    CE(target batch) + extra_weight x CE(extra batch), each mixed (--mixup, --cutmix) within itself.
    Both go through the model in one pass, which DistributedDataParallel takes, so batch norm
    normalises them together."""

    def __init__(self, label_smoothing: float = 0.0, mixup=None, extra_weight: float = 1.0):
        super().__init__(label_smoothing, mixup)
        self.extra_weight = extra_weight

    def prepare(self, part, device):
        target, extra = part
        inputs, score = super().prepare(target, device)
        extra_inputs, extra_score = super().prepare(extra, device)

        def both(logits: torch.Tensor) -> tuple[torch.Tensor, dict]:
            loss, figures = score(logits[: len(inputs)])
            extra_loss, extra_figures = extra_score(logits[len(inputs):])
            return loss + self.extra_weight * extra_loss, {**figures, "loss_extra": extra_loss.detach(),
                                                           "extra_top1": extra_figures["train_top1"]}

        return torch.cat([inputs, extra_inputs]), both


def check_mixing(settings: TrainSettings, num_classes: int, what: str) -> None:
    """--mixup / --cutmix mix pairs of images of different classes: refuse a one-class target (WHAT)
    and an odd batch, which timm's Mixup cannot pair."""
    if not (settings.mixup or settings.cutmix):
        return
    flag = f"--mixup {settings.mixup:g}" if settings.mixup else f"--cutmix {settings.cutmix:g}"
    if num_classes < 2:
        raise InputError(f"{flag}: {what} has one class, so there is nothing to mix; drop {flag.split()[0]}")
    if settings.batch_size % 2:
        raise InputError(f"{flag}: mixes the images of a batch in pairs, so --batch-size must be even "
                         f"(not {settings.batch_size})")


def amp_dtype(flag: str, device: torch.device) -> str:
    """--amp: auto is bf16 on a GPU that has it, fp16 (with a gradient scaler) on one without, and
    off on CPU, where a run stays in fp32 and bit-for-bit repeatable."""
    if flag != "auto":
        return flag
    if device.type != "cuda":
        return "off"
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


def to_device(batch, device: torch.device):
    """A batch's tensors on DEVICE: copies from pinned memory that overlap the step, and images (4-d
    floating tensors) in channels_last on a GPU, the layout its convolutions run fastest in."""
    if isinstance(batch, torch.Tensor):
        if device.type == "cuda" and batch.dim() == 4 and batch.is_floating_point():
            return batch.to(device, non_blocking=True, memory_format=torch.channels_last)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    return batch


class Window:
    """A log interval's figures, summed on the device (no synchronisation per step), with its time
    spent waiting for data and the samples it trained on."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.steps, self.waited, self.samples = 0, 0.0, 0
        self.start = time.perf_counter()

    def add(self, figures: dict) -> None:
        for key, value in figures.items():
            value = torch.as_tensor(value).detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value

    def means(self, dist: Dist) -> dict[str, float]:
        """The interval's means over its steps and over every rank: one transfer from the device."""
        keys = sorted(self.sums)
        stacked = dist.all_reduce_sum(torch.stack([self.sums[k].to(dist.device) for k in keys]))
        values = (stacked / (self.steps * dist.world)).tolist()
        return dict(zip(keys, values))

    def speed(self) -> dict[str, float]:
        seconds = max(time.perf_counter() - self.start, 1e-9)
        return {"images_per_s": round(self.samples / seconds, 1), "data_wait": round(self.waited / seconds, 3)}


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        algorithm: Algorithm,
        batches: Callable[[int], Iterable],
        steps_per_epoch: int,
        settings: TrainSettings,
        run_dir: Path,
        dist: Dist,
        validate: Callable[[torch.nn.Module], dict] | None = None,
        progress: bool = True,
        amp: str = "auto",
        compile: bool = False,
        tensorboard: bool = False,
    ):
        """`batches(epoch)` gives that epoch's batches (at least `steps_per_epoch` x --accum-steps of them)."""
        cuda = dist.device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed input shapes: the fastest kernels, chosen once
            model = model.to(memory_format=torch.channels_last)
        self.model = model.to(dist.device)
        self.algorithm = algorithm
        self.batches = batches
        self.steps_per_epoch = steps_per_epoch
        self.epochs = run_epochs(settings, steps_per_epoch)
        self.total_steps = steps_per_epoch * self.epochs
        # About 10 evaluations at most: a floored run of one-step epochs would otherwise spend its time scoring.
        self.validate_every = math.ceil(self.epochs / 10)
        self.s = settings
        self.global_batch = settings.batch_size * dist.world * settings.accum_steps
        self.run_dir = run_dir
        self.dist = dist
        self.validate = validate
        self.progress = progress and dist.main
        self.ddp = None
        self.train_model = self.model
        if dist.world > 1:
            self.ddp = self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[dist.device.index] if cuda else None)
        if compile:
            self.train_model = torch.compile(self.train_model)
        self.amp_dtype = amp_dtype(amp, dist.device)
        dtype = AMP_DTYPES[self.amp_dtype]
        self.autocast = (torch.autocast(dist.device.type, dtype=dtype) if dtype is not None
                         else contextlib.nullcontext())
        self.scaler = torch.amp.GradScaler(dist.device.type) if self.amp_dtype == "fp16" else None
        self.optimizer = create_optimizer(self.model, settings)
        self.scheduler = CosineLRScheduler(
            self.optimizer, t_initial=self.total_steps, warmup_t=int(settings.warmup_epochs * steps_per_epoch),
            warmup_lr_init=settings.lr * 0.01, lr_min=settings.lr * 0.01, t_in_epochs=False)
        self.ema = ModelEmaV3(self.model, decay=settings.ema_decay) if settings.ema_decay > 0 else None
        self.step = 0
        self.tensorboard = tensorboard and dist.main
        self.events = None  # TensorBoard's writer, opened when the run (re)starts

    @property
    def samples_seen(self) -> int:
        return self.step * self.global_batch

    @property
    def final_model(self) -> torch.nn.Module:
        """The weights a run ships: the EMA ones when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    def _checkpoint(self) -> None:
        if not self.dist.main:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "step": self.step,
            "samples_seen": self.samples_seen,
            "global_batch": self.global_batch,
            "world_size": self.dist.world,
            "launcher": self.dist.launcher,
            "rng": torch.get_rng_state(),
            "settings": asdict(self.s),
            "algorithm": self.algorithm.describe(),
            "steps_per_epoch": self.steps_per_epoch,
        }
        write_atomically(self.run_dir / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp), "--out",
                         lambda: tensor_bytes(state))

    def resume(self) -> None:
        state = torch.load(self.run_dir / CHECKPOINT_FILE, map_location=self.dist.device, weights_only=True)
        self._check_same_run(state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"].cpu())
        # By the samples seen: with the global batch kept, the same step whatever the process count.
        self.step = state.get("samples_seen", state["step"] * self.global_batch) // self.global_batch

    def _check_same_run(self, state: dict) -> None:
        """A resumed run goes on as it started: other settings, another algorithm or other data would
        leave a model that no single command describes (a checkpoint that lacks a field is not checked
        on it). The global batch may be split otherwise (RunRequest.start chose --accum-steps to keep it)."""
        where = f"--resume: {self.run_dir} was started with"
        started, now = state.get("settings", {}), asdict(self.s)
        free = HARMLESS_TO_CHANGE | (GLOBAL_BATCH_PARTS if "global_batch" in state else set())
        for key in sorted(set(started) & set(now) - free):
            if started[key] != now[key]:
                flag = "--" + key.replace("_", "-")
                raise InputError(f"{where} {flag} {started[key]}, this command gives {now[key]}; resume with the "
                                 "run's own flags")
        if state.get("global_batch", self.global_batch) != self.global_batch:
            raise InputError(f"{where} a global batch of {state['global_batch']}, this command gives "
                             f"{self.global_batch}; {keep_global_batch_hint(state['global_batch'], self.dist.world)}")
        algorithm = self.algorithm.describe()
        if state.get("algorithm", algorithm) != algorithm:
            raise InputError(f"{where} {state['algorithm']}, this command asks for {algorithm}; "
                             "resume with the run's own flags")
        if state.get("steps_per_epoch", self.steps_per_epoch) != self.steps_per_epoch:
            raise InputError(f"{where} {state['steps_per_epoch']} steps an epoch, its data now gives "
                             f"{self.steps_per_epoch}: resume on the data it started on")

    def _log(self, row: dict) -> None:
        if self.dist.main:
            with open(self.run_dir / METRICS_FILE, "a") as f:
                f.write(json.dumps(row) + "\n")
        if self.events is not None:
            for key, value in row.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self.events.add_scalar(key, value, row["step"])

    def _draw(self, batches: Iterator, step: int, micro: int = 0):
        """Batch MICRO of STEP, drawn (augmentations without workers, then the model's dropout) from
        its own random state, whether the run got here straight or resumed and is skipping past it: a
        pipeline that reads ahead (WebDataset's batcher takes the next batch's first sample) draws alike
        either way."""
        seed_everything(self.s.seed, self.dist.rank, step, *([micro] if micro else []))
        batch = next(batches)
        # Samples fetched in this process may have seeded per sample (data/loading.py): the model's
        # draws take a stream of their own.
        seed_everything(self.s.seed, self.dist.rank, step, micro, "model")
        return batch

    def _epoch_batches(self, epoch: int, skip: int) -> Iterator:
        seed_everything(self.s.seed, self.dist.rank, "epoch", epoch)  # for loaders that draw their seed at iter()
        it = iter(self.batches(epoch))
        for step in range(epoch * self.steps_per_epoch, epoch * self.steps_per_epoch + skip):
            for micro in range(self.s.accum_steps):
                self._draw(it, step, micro)  # resuming mid-epoch: the data and draws of an uninterrupted run
        return it

    def _train_step(self, batches: Iterator, window: Window) -> None:
        """One optimizer step over --accum-steps batches; under DDP the gradients are averaged once,
        on the last of them."""
        self.optimizer.zero_grad(set_to_none=True)
        for micro in range(self.s.accum_steps):
            waiting = time.perf_counter()
            batch = to_device(self._draw(batches, self.step, micro), self.dist.device)
            window.waited += time.perf_counter() - waiting
            last = micro == self.s.accum_steps - 1
            with contextlib.nullcontext() if last or self.ddp is None else self.ddp.no_sync():
                with self.autocast:
                    loss, extra = self.algorithm.loss(self.train_model, batch, self.dist.device)
                scaled = loss / self.s.accum_steps
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            window.add({"loss": loss / self.s.accum_steps,
                        **{k: torch.as_tensor(v) / self.s.accum_steps for k, v in extra.items()}})
        if self.s.clip_grad is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.s.clip_grad)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model, step=self.step)
        window.steps += 1
        window.samples += self.global_batch

    def fit(self) -> None:
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # A resumed run drops the events logged after its checkpoint, as they will be logged again.
            self.events = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), purge_step=self.step)
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", disable=not self.progress)
        start, window = time.perf_counter(), Window()
        while self.step < self.total_steps:
            epoch = self.step // self.steps_per_epoch
            batches = self._epoch_batches(epoch, self.step % self.steps_per_epoch)
            self.train_model.train()
            for _ in range(self.steps_per_epoch - self.step % self.steps_per_epoch):
                self.scheduler.step_update(self.step)
                self._train_step(batches, window)
                self.step += 1
                bar.update(1)
                if self.step % self.s.log_every == 0 or self.step % self.steps_per_epoch == 0:
                    row = {"step": self.step, "epoch": epoch, "samples_seen": self.samples_seen,
                           "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - start, 2),
                           **window.means(self.dist), **window.speed()}
                    self._log(row)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", img_s=f"{row['images_per_s']:.0f}",
                                    wait=f"{row['data_wait']:.0%}")
                    window = Window()
                if self.step % self.s.checkpoint_every == 0:
                    self._checkpoint()
            last = epoch + 1 == self.epochs
            if self.validate is not None and ((epoch + 1) % self.validate_every == 0 or last):  # every rank a slice
                self._log({"step": self.step, "epoch": epoch, **self.validate(self.final_model)})
                window = Window()  # the epoch ended with a log: the next interval's speed leaves scoring out
        bar.close()
        self._checkpoint()
        if self.events is not None:
            self.events.close()
        if self.dist.main:
            plot_curve(self.run_dir)


def keep_global_batch_hint(global_batch: int, world: int) -> str:
    """The --batch-size / --accum-steps pairs that keep GLOBAL_BATCH on WORLD processes, or the process
    counts that can keep it at all."""
    if global_batch % world:
        counts = [w for w in range(1, global_batch + 1) if global_batch % w == 0]
        return (f"no --batch-size keeps it on {world} processes; process counts that can: "
                f"{', '.join(map(str, counts[:12]))}")
    per_process = global_batch // world
    pairs = [(b, per_process // b) for b in range(per_process, 0, -1) if per_process % b == 0]
    return (f"on {world} process(es) keep it with " +
            ", ".join(f"--batch-size {b} --accum-steps {a}" for b, a in pairs[:6]))


def plot_curve(run_dir: Path) -> None:
    """Training loss by step, and validation top-1 by step where the run logged it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    train = [r for r in rows if "loss" in r]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    val = [r for r in rows if "val_top1" in r]
    if val:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in val], [r["val_top1"] for r in val], "o-", color="C1", label="val top-1")
        ax2.set_ylabel("val top-1")
        ax2.set_ylim(0, 1)
    ax.set_title(run_dir.name)
    fig.tight_layout()
    fig.savefig(run_dir / CURVE_FILE, dpi=110)
    plt.close(fig)


def choose_accum_steps(flag: int | None, batch_size: int, world: int, checkpoint: Path | None) -> int:
    """--accum-steps: as given, 1 by default; on a resume by default what keeps the run's global
    batch on this number of processes, and a choice that cannot keep it is refused with those that can."""
    started = None
    if checkpoint is not None:
        started = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True).get("global_batch")
    if started is None:
        return flag or 1
    per_step = batch_size * world
    if flag is None and started % per_step == 0:
        return started // per_step
    if flag is not None and per_step * flag == started:
        return flag
    given = f"--batch-size {batch_size} x {world} process(es)" + (f" x --accum-steps {flag}" if flag else "")
    raise InputError(f"--resume: the run's global batch is {started} samples a step and {given} cannot keep it; "
                     f"{keep_global_batch_hint(started, world)}")
