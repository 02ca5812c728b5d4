"""The small target tasks the studies train on, and the pixel baselines every deep route must beat.

  digits  `pttrain data digits`: scikit-learn's 8x8 digits as 16 px grayscale, 10 classes, 899 test
          images; --labels-per-class and --seed draw the labeled ones
  photos  32x32 RGB patches cut from the two photos that ship inside scikit-learn
          (`load_sample_images()`: china.jpg, flower.jpg), one class per photo region (sky, pagoda,
          lake, trees; petals, foliage): labeled patches drawn from one part of each region, 60 test
          patches from another part (disjoint), the test patches the same for every seed

  scenes  RGB photographs at their own size: crops of the ten colour photographs that scikit-image
          and scikit-learn ship, one class per photograph; labeled crops from the left 55% of each,
          30 test crops from the right 45% (disjoint, the same for every seed). A crop covers 40-60%
          of the photograph's shorter side at an aspect of 3/4-4/3 and is stored at most 288 px on its
          longer side, so the images are non-square, 120-288 px, as a user's photos are
  textures  the pre-training source for scenes: 11 classes of crops of scikit-image's other images
          (grey textures and scenes, tinted at random to colour, and two colour charts), 60 a class

  lookalikes  10 Latin letters among the built-in world's classes (G N S U V W Z w y z, confusable
          in pairs once coarse), rendered by the world's renderer and then put through what made the digits: 8x8 pixels at 17 grey levels,
          upsampled bilinearly to 16 px; 180 images a class, split like digits (a fixed test half,
          --labels-per-class drawn by the seed, the rest unlabeled). The source covers its classes
          and the domain still differs: the case the method is built for, which digits are not
  lookalikes-sharp  the same renders without the coarse step: the source world's own look, which
          the source classifier recognises

Every export is skipped when it exists, so studies share and resume them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks.common import run_tool

PATCH = 32
PHOTO_TEST_PER_CLASS = 60
# class: (photo, training box, test box), boxes (left, top, right, bottom) in the 640x427 photo
PHOTO_REGIONS = {
    "sky": ("china", (380, 0, 500, 170), (510, 0, 640, 170)),
    "pagoda": ("china", (100, 130, 320, 225), (105, 240, 320, 335)),
    "lake": ("china", (352, 240, 440, 295), (445, 240, 530, 290)),
    "trees": ("china", (370, 340, 485, 427), (490, 330, 640, 427)),
    "petals": ("flower", (225, 120, 385, 215), (225, 225, 385, 320)),
    "foliage": ("flower", (0, 0, 160, 330), (470, 0, 640, 300)),
}
DONE = "done"
SCENE_TEST_PER_CLASS = 30
SCENE_LONGEST = 288  # the stored crops' longest side at most: photos of about the size users bring
SCENE_SPLIT = 0.55  # labeled crops from the left 55% of each photograph, test crops from the rest
TEXTURE_PER_CLASS = 60


def _scene_photos() -> dict:
    """The ten colour photographs (name -> HxWx3 uint8) of scikit-image and scikit-learn."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {name: getattr(skimage.data, name)() for name in (
        "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")}
    photos["motorcycle"] = skimage.data.stereo_motorcycle()[0]
    bundle = load_sample_images()
    photos.update({Path(name).stem: pixels for name, pixels in zip(bundle.filenames, bundle.images)})
    return photos


def _texture_sources() -> dict:
    """The pre-training source's classes (name -> HxW grey or HxWx3 uint8): scikit-image's images
    that are not among the scene photographs."""
    import numpy as np
    import skimage.data

    sources = {name: getattr(skimage.data, name)() for name in (
        "brick", "grass", "gravel", "camera", "moon", "coins", "cell", "page", "text", "colorwheel")}
    logo = skimage.data.logo().astype(np.float32)
    alpha = logo[..., 3:] / 255  # the logo on white
    sources["logo"] = (logo[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return sources


def _crop(pixels, box: tuple[int, int, int, int], rng, share: tuple[float, float]):
    """A random crop of PIXELS inside BOX (left, top, right, bottom) whose geometric-mean side is a
    random SHARE of the image's shorter side, aspect 3/4-4/3, as a PIL image at most SCENE_LONGEST px."""
    import math

    from PIL import Image

    left, top, right, bottom = box
    side = rng.uniform(*share) * min(pixels.shape[:2])
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    w = max(8, min(right - left, round(side * math.sqrt(aspect))))
    h = max(8, min(bottom - top, round(side / math.sqrt(aspect))))
    x, y = int(rng.integers(left, right - w + 1)), int(rng.integers(top, bottom - h + 1))
    image = Image.fromarray(pixels[y:y + h, x:x + w])
    scale = SCENE_LONGEST / max(w, h)
    if scale < 1:
        image = image.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
    return image


def scenes(out: Path, per_class: int, seed: int) -> Path:
    """The scenes target (module docstring) as an ImageFolder tree, PER_CLASS labeled crops drawn by SEED."""
    import numpy as np

    if (out / DONE).exists():
        return out
    for split, count, rng in (("train", per_class, np.random.default_rng(seed)),
                              ("test", SCENE_TEST_PER_CLASS, np.random.default_rng(10_000))):
        for name, pixels in _scene_photos().items():
            height, width = pixels.shape[:2]
            cut = round(width * SCENE_SPLIT)
            box = (0, 0, cut, height) if split == "train" else (cut, 0, width, height)
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _crop(pixels, box, rng, (0.4, 0.6)).save(folder / f"{i:03d}.png")
    (out / DONE).write_text("")
    return out


def textures(out: Path) -> Path:
    """The textures source (module docstring) as an ImageFolder train/ tree; grey images get a
    random colour tint (a gain per channel) per crop, so that colour alone tells no class apart."""
    import numpy as np
    from PIL import Image

    if (out / DONE).exists():
        return out
    rng = np.random.default_rng(20_261_205)
    for name, pixels in _texture_sources().items():
        folder = out / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        height, width = pixels.shape[:2]
        for i in range(TEXTURE_PER_CLASS):
            crop = np.asarray(_crop(pixels, (0, 0, width, height), rng, (0.3, 0.7)))
            if crop.ndim == 2:
                gain = rng.uniform(0.4, 1.0, size=3)
                crop = (crop[..., None] * (gain / gain.max())).astype(np.uint8)
            Image.fromarray(crop).save(folder / f"{i:03d}.png")
    (out / DONE).write_text("")
    return out


def digits(out: Path, per_class: int, seed: int) -> Path:
    """The digits target with PER_CLASS labeled images a class, drawn by SEED."""
    if not (out / "split.json").exists():
        run_tool("train", "data", "digits", "--out", out, "--labels-per-class", per_class, "--seed", seed)
    return out


def photos(out: Path, per_class: int, seed: int) -> Path:
    """The photo-patch target as an ImageFolder tree (train/, test/), PER_CLASS labeled patches drawn by SEED."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    if (out / DONE).exists():
        return out
    bundle = load_sample_images()
    images = {Path(name).stem: Image.fromarray(pixels) for name, pixels in zip(bundle.filenames, bundle.images)}
    for split, count, rng in (("train", per_class, np.random.default_rng(seed)),
                              ("test", PHOTO_TEST_PER_CLASS, np.random.default_rng(10_000))):
        for name, (photo, train_box, test_box) in PHOTO_REGIONS.items():
            left, top, right, bottom = train_box if split == "train" else test_box
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                x, y = int(rng.integers(left, right - PATCH + 1)), int(rng.integers(top, bottom - PATCH + 1))
                images[photo].crop((x, y, x + PATCH, y + PATCH)).save(folder / f"{i:03d}.png")
    (out / DONE).write_text("")
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


EXPORTS = {"digits": digits, "photos": photos, "lookalikes": lookalikes,
           "lookalikes-sharp": lambda out, per_class, seed: lookalikes(out, per_class, seed, coarse=False)}


def training_part(tree: Path) -> Path:
    """TREE's train/ alone (copied once), so that a run logs no test accuracy during training."""
    part = tree.parent / f"{tree.name}-train"
    if not (part / "train").is_dir():
        shutil.copytree(tree / "train", part / "train")
    return part


def validation_split(tree: Path, out: Path, held_out: int) -> Path:
    """An ImageFolder tree from TREE's labeled train/ alone: HELD_OUT images a class (the first in
    sorted order; the labeled draw is already random) become OUT/test/, the rest OUT/train/. Studies
    choose settings on it, so that TREE's test split never takes part in a choice."""
    if (out / DONE).exists():
        return out
    for folder in sorted(p for p in (tree / "train").iterdir() if p.is_dir()):
        images = sorted(folder.iterdir())
        if len(images) <= held_out:
            raise ValueError(f"{folder}: {len(images)} images, too few to hold {held_out} out")
        for i, image in enumerate(images):
            split = "test" if i < held_out else "train"
            (out / split / folder.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, out / split / folder.name / image.name)
    (out / DONE).write_text("")
    return out


def _pixels(tree: Path, split: str, size: int | None):
    import numpy as np
    from PIL import Image

    paths = sorted((tree / split).glob("*/*.png"))

    def load(path: Path) -> Image.Image:
        image = Image.open(path)
        return image if size is None else image.resize((size, size), Image.Resampling.BILINEAR)

    x = np.stack([np.asarray(load(p), dtype=np.float32).ravel() / 255 for p in paths])
    return x, [p.parent.name for p in paths]


def pixel_floors(tree: Path, size: int | None = None) -> dict[str, float]:
    """Test top-1 of logistic regression and of an RBF SVM on the raw pixels (in [0, 1]) of TREE's
    train/ images (resized to SIZE square when given: images of several sizes), scikit-learn's
    defaults otherwise; cached in TREE/pixel_floors.json (pixel_floors-SIZE.json)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    cache = tree / ("pixel_floors.json" if size is None else f"pixel_floors-{size}.json")
    if cache.exists():
        return json.loads(cache.read_text())
    (x_train, y_train), (x_test, y_test) = _pixels(tree, "train", size), _pixels(tree, "test", size)
    scores = {"logreg": float(LogisticRegression(max_iter=5000).fit(x_train, y_train).score(x_test, y_test)),
              "svm": float(SVC(kernel="rbf").fit(x_train, y_train).score(x_test, y_test))}
    cache.write_text(json.dumps(scores))
    return scores
