"""The one training loop every pttrain command shares.

What differs between commands lives in an `Algorithm`: what a step's loss is (supervised
cross-entropy here; FixMatch, UDA and KD say only what they change). The loop owns the rest:
optimiser, cosine schedule with warm-up, AMP on CUDA, optional EMA, logs, checkpoints, resume.
Every random draw of a step follows from (--seed, rank, step), so a resumed run ends with the
weights of an uninterrupted one (train/seeding.py).
"""

from __future__ import annotations

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
from .runs import CHECKPOINT_FILE, METRICS_FILE
from .seeding import seed_everything

CURVE_FILE = "curve.png"
# How often a run checkpoints and logs changes nothing it computes, so a resume may change them.
HARMLESS_TO_CHANGE = {"checkpoint_every", "log_every"}


@dataclass
class TrainSettings:
    epochs: int = 10
    min_steps: int = 0  # a floor on the optimizer steps: small data runs more epochs instead of too few steps
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
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


class Algorithm:
    """One step's loss. Subclasses override `loss` and say only what differs."""

    def loss(self, model: torch.nn.Module, batch, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def describe(self) -> str:
        """Its name and settings (numbers, strings), which a resumed run must share with its start."""
        simple = {k: v for k, v in sorted(vars(self).items()) if isinstance(v, (bool, int, float, str, type(None)))}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in simple.items())})"


class Supervised(Algorithm):
    """Cross-entropy on labeled batches (pseudo pre-training, fine-tuning, scratch)."""

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def loss(self, model, batch, device):
        images, labels = batch
        labels = torch.as_tensor(labels).to(device)
        logits = model(images.to(device))
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return loss, {"train_top1": (logits.argmax(1) == labels).float().mean().item()}


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
    ):
        """`batches(epoch)` gives that epoch's batches (at least `steps_per_epoch` of them)."""
        self.model = model.to(dist.device)
        self.algorithm = algorithm
        self.batches = batches
        self.steps_per_epoch = steps_per_epoch
        self.epochs = run_epochs(settings, steps_per_epoch)
        self.total_steps = steps_per_epoch * self.epochs
        # About 10 evaluations at most: a floored run of one-step epochs would otherwise spend its time scoring.
        self.validate_every = math.ceil(self.epochs / 10)
        self.s = settings
        self.run_dir = run_dir
        self.dist = dist
        self.validate = validate
        self.progress = progress and dist.main
        self.train_model = model
        if dist.world > 1:
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
        self.scheduler = CosineLRScheduler(
            self.optimizer, t_initial=self.total_steps, warmup_t=int(settings.warmup_epochs * steps_per_epoch),
            warmup_lr_init=settings.lr * 0.01, lr_min=settings.lr * 0.01, t_in_epochs=False)
        self.ema = ModelEmaV3(self.model, decay=settings.ema_decay) if settings.ema_decay > 0 else None
        self.step = 0

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
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "step": self.step,
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
        torch.set_rng_state(state["rng"].cpu())
        self.step = state["step"]

    def _check_same_run(self, state: dict) -> None:
        """A resumed run goes on as it started: other settings, another algorithm or other data would
        leave a model that no single command describes (checkpoints from before these fields pass)."""
        where = f"--resume: {self.run_dir} was started with"
        started, now = state.get("settings", {}), asdict(self.s)
        for key in sorted(set(started) & set(now) - HARMLESS_TO_CHANGE):
            if started[key] != now[key]:
                flag = "--" + key.replace("_", "-")
                raise InputError(f"{where} {flag} {started[key]}, this command gives {now[key]}; resume with the "
                                 "run's own flags")
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

    def _draw(self, batches: Iterator, step: int):
        """The batch of STEP, drawn (augmentations without workers, then the model's dropout) from STEP's
        random state, whether the run got here straight or resumed and is skipping past it: a pipeline
        that reads ahead (WebDataset's batcher takes the next batch's first sample) draws alike either way."""
        seed_everything(self.s.seed, self.dist.rank, step)
        return next(batches)

    def _epoch_batches(self, epoch: int, skip: int) -> Iterator:
        seed_everything(self.s.seed, self.dist.rank, "epoch", epoch)  # for loaders that draw their seed at iter()
        it = iter(self.batches(epoch))
        for step in range(epoch * self.steps_per_epoch, epoch * self.steps_per_epoch + skip):
            self._draw(it, step)  # resuming mid-epoch: the data and draws of an uninterrupted run
        return it

    def fit(self) -> None:
        device = self.dist.device
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", disable=not self.progress)
        start, window = time.perf_counter(), []
        while self.step < self.total_steps:
            epoch = self.step // self.steps_per_epoch
            batches = self._epoch_batches(epoch, self.step % self.steps_per_epoch)
            self.train_model.train()
            for _ in range(self.steps_per_epoch - self.step % self.steps_per_epoch):
                batch = self._draw(batches, self.step)
                self.scheduler.step_update(self.step)
                with amp:
                    loss, extra = self.algorithm.loss(self.train_model, batch, device)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                if self.ema is not None:
                    self.ema.update(self.model, step=self.step)
                self.step += 1
                window.append(loss.item())
                bar.update(1)
                if self.step % self.s.log_every == 0 or self.step % self.steps_per_epoch == 0:
                    row = {"step": self.step, "epoch": epoch, "loss": sum(window) / len(window),
                           "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - start, 2), **extra}
                    self._log(row)
                    bar.set_postfix(loss=f"{row['loss']:.3f}")
                    window = []
                if self.step % self.s.checkpoint_every == 0:
                    self._checkpoint()
            last = epoch + 1 == self.epochs
            if self.validate is not None and self.dist.main and ((epoch + 1) % self.validate_every == 0 or last):
                self._log({"step": self.step, "epoch": epoch, **self.validate(self.final_model)})
        bar.close()
        self._checkpoint()
        if self.dist.main:
            plot_curve(self.run_dir)


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
