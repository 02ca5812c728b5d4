"""The small target tasks the studies train on, and the pixel baselines every deep route must beat.

  digits  `pttrain data digits`: scikit-learn's 8x8 digits as 16 px grayscale, 10 classes, 899 test
          images; --labels-per-class and --seed draw the labeled ones
  lookalikes  10 Latin letters among the built-in world's classes (G N S U V W Z w y z, confusable
          in pairs once coarse), rendered by the world's renderer and then put through what made
          the digits: 8x8 pixels at 17 grey levels, upsampled bilinearly to 16 px; 180 images a
          class, split like digits (a fixed test half, --labels-per-class drawn by the seed, the
          rest unlabeled). The source covers its classes and the domain still differs: the case
          the method is built for, which digits are not
  lookalikes-sharp  the same renders without the coarse step: the source world's own look, which
          the source classifier recognises

Every export is skipped when it exists, so studies share and resume them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks.common import run_tool

DONE = "done"


def digits(out: Path, per_class: int, seed: int) -> Path:
    """The digits target with PER_CLASS labeled images a class, drawn by SEED."""
    if not (out / "split.json").exists():
        run_tool("train", "data", "digits", "--out", out, "--labels-per-class", per_class, "--seed", seed)
    return out


LOOKALIKE_CLASS_IDS = (419, 430, 750, 783, 666, 668, 464, 539, 521, 268)  # G N S U V W Z w y z
LOOKALIKE_PER_CLASS = 180
LOOKALIKE_RENDER_SEED = 20_261_126  # none of the recipes' training seeds


def lookalikes(out: Path, per_class: int, seed: int, coarse: bool = True) -> Path:
    """The lookalikes target (module docstring) with PER_CLASS labeled images a class, drawn by SEED;
    without COARSE, the renders as they are: the source world's own look."""
    import torch

    from recipes.glyphs_1k.class_list import load_classes
    from recipes.glyphs_1k.render import GlyphRenderer
    from train.data import digits as digits_data

    if (out / DONE).exists():
        return out
    classes = [load_classes()[i] for i in LOOKALIKE_CLASS_IDS]
    labels = torch.arange(len(classes)).repeat_interleave(LOOKALIKE_PER_CLASS)
    renders = GlyphRenderer([c.codepoint for c in classes]).render(labels, LOOKALIKE_RENDER_SEED)
    if coarse:  # the digits' own making: 8x8 pixels at 17 levels (0..16), upsampled by digits' PNG writer
        pixels = torch.nn.functional.avg_pool2d(renders.float() / 255, 2).mul(16).round().squeeze(1).numpy()
        png = digits_data.to_png
    else:
        pixels = renders.squeeze(1).numpy()
        png = _png
    labels = labels.numpy()
    parts = digits_data.split(labels, per_class, seed)
    names = [f"U+{c.codepoint:04X}" for c in classes]
    for part, rows in (("test", parts.test), ("train", parts.train), ("unlabeled", parts.unlabeled)):
        for row in rows:
            folder = out / part / (digits_data.UNLABELED_FOLDER if part == "unlabeled" else names[labels[row]])
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{row:04d}.png").write_bytes(png(pixels[row]))
    (out / DONE).write_text("")
    return out


def source_recognition(tree: Path) -> dict:
    """How well the built-in source classifier recognises a target, which PCS's soft labels rest on:
    its mean top-1 probability on TREE's labeled train/ images (what `ptgen pseudo` prints), and,
    for a lookalikes tree (class folders named U+XXXX, classes of its own), its top-1 over all its
    classes on the test images (None for other targets). Cached in TREE/source_recognition.json."""
    import torch

    from generate.soft_labels import classifier_input
    from ptcommon.classifiers import load_classifier
    from recipes.glyphs_1k.class_list import load_classes

    cache = tree / "source_recognition.json"
    if cache.exists():
        return json.loads(cache.read_text())
    model, config = load_classifier("builtin:glyphs-1k", "--classifier")
    model.eval()
    ids = {f"U+{c.codepoint:04X}": c.id for c in load_classes()}
    with torch.no_grad():
        labeled = sorted((tree / "train").glob("*/*.png"))
        mean_top_prob = float(model(classifier_input(labeled, config)).softmax(1).amax(1).mean())
        folders = sorted(p for p in (tree / "test").iterdir() if p.is_dir())
        top1 = None
        if all(f.name in ids for f in folders):
            hits = total = 0
            for folder in folders:
                paths = sorted(folder.glob("*.png"))
                hits += int((model(classifier_input(paths, config)).argmax(1) == ids[folder.name]).sum())
                total += len(paths)
            top1 = hits / total
    result = {"mean_top_prob": mean_top_prob, "top1": top1}
    cache.write_text(json.dumps(result))
    return result


def _png(pixels) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


EXPORTS = {"digits": digits, "lookalikes": lookalikes,
           "lookalikes-sharp": lambda out, per_class, seed: lookalikes(out, per_class, seed, coarse=False)}


def training_part(tree: Path) -> Path:
    """TREE's train/ alone (copied once), so that a run logs no test accuracy during training."""
    part = tree.parent / f"{tree.name}-train"
    if not (part / "train").is_dir():
        shutil.copytree(tree / "train", part / "train")
    return part


def _pixels(tree: Path, split: str):
    import numpy as np
    from PIL import Image

    paths = sorted((tree / split).glob("*/*.png"))
    x = np.stack([np.asarray(Image.open(p), dtype=np.float32).ravel() / 255 for p in paths])
    return x, [p.parent.name for p in paths]


def pixel_floors(tree: Path) -> dict[str, float]:
    """Test top-1 of logistic regression and of an RBF SVM on the raw pixels (in [0, 1]) of TREE's
    train/ images, scikit-learn's defaults otherwise; cached in TREE/pixel_floors.json."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    cache = tree / "pixel_floors.json"
    if cache.exists():
        return json.loads(cache.read_text())
    (x_train, y_train), (x_test, y_test) = _pixels(tree, "train"), _pixels(tree, "test")
    scores = {"logreg": float(LogisticRegression(max_iter=5000).fit(x_train, y_train).score(x_test, y_test)),
              "svm": float(SVC(kernel="rbf").fit(x_train, y_train).score(x_test, y_test))}
    cache.write_text(json.dumps(scores))
    return scores
