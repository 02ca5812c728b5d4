"""Augmented glyph renders: white ink on black, centred, grayscale, deterministic per seed.

Fonts are drawn once per (glyph, face, stroke weight) into a small cached "master" image;
every training image is then a batched torch resampling of a master. Drawing with FreeType
per image would be thousands of times slower and would starve training of data.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .class_list import load_classes
from .fonts import face_paths

# Masters hold twice the output resolution: an identity bilinear sample at half resolution
# lands exactly between four master pixels, so it equals area downsampling, and mild
# rotation or scaling stays close to it.
MASTER_SCALE = 2
# FreeType draws at this multiple of the master size; stroke changes happen at that
# resolution, where one pixel is a fraction of an output pixel.
SUPERSAMPLE = 4
# Grayscale erosion (<0) or dilation (>0) radius, in drawing pixels, of each stroke weight.
# With 16x16 output one drawing pixel is 1/8 px, so the weights change a stroke's width by
# -0.25, 0, +0.25 and +0.5 output pixels; the bold faces add the heavier end.
STROKE_RADII: tuple[int, ...] = (-1, 0, 1, 2)
# Nominal em size and the largest ink extent, as fractions of the canvas. Glyphs keep their
# natural size (a period stays small, "o" and "O" differ) unless they would overflow.
EM_FRACTION = 0.8
MAX_EXTENT = 0.8


@dataclass(frozen=True)
class Jitter:
    """Ranges of the random augmentation; each value is drawn uniformly per image."""

    rotation_deg: float = 10.0  # +- degrees
    log_scale: float = 0.12  # scale in exp(+-log_scale)
    log_aspect: float = 0.08  # width/height ratio in exp(+-log_aspect)
    shear: float = 0.15  # +- horizontal shear factor
    shift_px: float = 1.0  # +- output pixels on each axis
    blur: float = 0.8  # blend weight of a [1, 2, 1] blur, in [0, blur]


# Columns of the per-image uniform draws; one row per image keeps an image's parameters
# independent of the batch it is rendered in.
_FACE, _STROKE, _ROT, _SCALE, _ASPECT, _SHEAR, _DX, _DY, _BLUR = range(9)
_NUM_DRAWS = 9


def draw_glyph(char: str, font: ImageFont.FreeTypeFont, canvas: int) -> np.ndarray:
    """One glyph as a canvas x canvas uint8 array, ink bounding box centred, white on black."""
    scratch = Image.new("L", (3 * canvas, 3 * canvas), 0)
    ImageDraw.Draw(scratch).text((1.5 * canvas, 1.5 * canvas), char, fill=255, font=font, anchor="mm")
    box = scratch.getbbox()
    out = Image.new("L", (canvas, canvas), 0)
    if box is None:
        return np.asarray(out)
    ink = scratch.crop(box)
    limit = MAX_EXTENT * canvas
    if max(ink.size) > limit:
        factor = limit / max(ink.size)
        ink = ink.resize((max(1, round(ink.width * factor)), max(1, round(ink.height * factor))), Image.Resampling.BOX)
    out.paste(ink, ((canvas - ink.width) // 2, (canvas - ink.height) // 2))
    return np.asarray(out)


def _morph(images: torch.Tensor, radius: int) -> torch.Tensor:
    """Grayscale dilation (radius > 0) or erosion (radius < 0) with a square window."""
    if radius == 0:
        return images
    r = abs(radius)
    padded = F.pad(images, (r, r, r, r))
    reduce = torch.amax if radius > 0 else torch.amin
    rows = reduce(padded.unfold(-1, 2 * r + 1, 1), dim=-1)
    return reduce(rows.unfold(-2, 2 * r + 1, 1), dim=-1)


def rasterize(codepoints: Sequence[int], size: int = 16) -> torch.Tensor:
    """Masters for every (glyph, face, stroke weight): uint8 (C, faces, strokes, 2*size, 2*size)."""
    master = MASTER_SCALE * size
    canvas = SUPERSAMPLE * master
    fonts = [ImageFont.truetype(str(p), size=round(EM_FRACTION * canvas)) for p in face_paths()]
    out = torch.empty(len(codepoints), len(fonts), len(STROKE_RADII), master, master, dtype=torch.uint8)
    for index, cp in enumerate(codepoints):
        drawn = torch.from_numpy(np.stack([draw_glyph(chr(cp), font, canvas) for font in fonts]))
        for s, radius in enumerate(STROKE_RADII):
            weighted = _morph(drawn, radius).float().unsqueeze(1)
            out[index, :, s] = F.avg_pool2d(weighted, SUPERSAMPLE).squeeze(1).round().to(torch.uint8)
    return out


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of non-negative integers (e.g. base seed, batch)."""
    state = np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


class GlyphRenderer:
    """Renders augmented images of a fixed list of glyph classes.

    `render(labels, seed)` is a pure function of its arguments, and image i depends only on
    (seed, i, labels[i]): rendering a prefix of the labels gives a prefix of the images.
    """

    def __init__(self, codepoints: Sequence[int], size: int = 16, jitter: Jitter = Jitter()) -> None:
        if not codepoints:
            raise ValueError("GlyphRenderer needs at least one code point")
        self.codepoints = list(codepoints)
        self.size = size
        self.jitter = jitter
        self.masters = rasterize(self.codepoints, size)

    @property
    def num_classes(self) -> int:
        return len(self.codepoints)

    def render(self, labels: torch.Tensor, seed: int) -> torch.Tensor:
        """uint8 images (N, 1, size, size) of the classes `labels` (indices into the code points)."""
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes})")
        n, (_, faces, strokes, _, _) = labels.numel(), self.masters.shape
        draws = torch.rand(n, _NUM_DRAWS, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        face = (draws[:, _FACE] * faces).long()
        stroke = (draws[:, _STROKE] * strokes).long()
        masters = self.masters[labels, face, stroke].unsqueeze(1).float().div_(255.0)
        grid = _affine_grid(self._sampling_affine(draws), self.size)
        images = F.grid_sample(masters, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        blur = (self.jitter.blur * draws[:, _BLUR]).float().view(n, 1, 1, 1)
        images = torch.lerp(images, _blur121(images), blur)
        return images.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)

    def batches(self, batch_size: int, seed: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless (images, labels) batches with uniform labels; batch k depends on (seed, k) only.

        `start` skips to batch `start` at no cost, which is how an interrupted run resumes.
        """
        for index in itertools.count(start):
            label_gen = torch.Generator().manual_seed(derive_seed(seed, index, 0))
            labels = torch.randint(self.num_classes, (batch_size,), generator=label_gen)
            yield self.render(labels, derive_seed(seed, index, 1)), labels

    def _sampling_affine(self, draws: torch.Tensor) -> torch.Tensor:
        """(N, 2, 3) maps from output to master coordinates, the inverse of the glyph's motion."""
        j = self.jitter

        def spread(column: int, half_width: float) -> torch.Tensor:
            return (2.0 * draws[:, column] - 1.0) * half_width

        angle = torch.deg2rad(spread(_ROT, j.rotation_deg))
        scale = torch.exp(spread(_SCALE, j.log_scale))
        aspect = torch.exp(spread(_ASPECT, j.log_aspect))
        shear = spread(_SHEAR, j.shear)
        # Forward motion: scale the axes, shear, then rotate.
        sx, sy = scale * aspect.sqrt(), scale / aspect.sqrt()
        cos, sin = torch.cos(angle), torch.sin(angle)
        a, b = cos * sx, (cos * shear - sin) * sy
        c, d = sin * sx, (sin * shear + cos) * sy
        det = a * d - b * c
        inv = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / det.view(-1, 1, 1)
        # One output pixel spans 2/size in grid_sample's normalised coordinates.
        shift = torch.stack([spread(_DX, j.shift_px), spread(_DY, j.shift_px)], -1) * (2.0 / self.size)
        offset = -(inv @ shift.unsqueeze(-1))
        return torch.cat([inv, offset], -1).float()


def _affine_grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """`F.affine_grid(theta, [N, 1, size, size], align_corners=False)` by broadcasting.

    With a 3-wide inner dimension, affine_grid's batched matmul costs several times more than
    the resampling itself; two broadcast multiply-adds give the same grid.
    """
    centres = (2.0 * torch.arange(size, dtype=theta.dtype) + 1.0) / size - 1.0
    x, y = centres.view(1, 1, size), centres.view(1, size, 1)
    t = theta.unsqueeze(-1).unsqueeze(-1)
    return torch.stack([t[:, 0, 0] * x + t[:, 0, 1] * y + t[:, 0, 2], t[:, 1, 0] * x + t[:, 1, 1] * y + t[:, 1, 2]], -1)


def _blur121(images: torch.Tensor) -> torch.Tensor:
    """Separable [1, 2, 1] / 4 blur with black borders, as plain sums so that it is exact."""
    p = F.pad(images, (1, 1, 0, 0))
    rows = (p[..., :-2] + 2.0 * p[..., 1:-1] + p[..., 2:]) * 0.25
    p = F.pad(rows, (0, 0, 1, 1))
    return (p[..., :-2, :] + 2.0 * p[..., 1:-1, :] + p[..., 2:, :]) * 0.25


def benchmark(batch_size: int = 4096, batches: int = 20) -> float:
    """Images a second that `batches()` yields for the 1000 source classes on this machine."""
    renderer = GlyphRenderer([c.codepoint for c in load_classes()])
    stream = renderer.batches(batch_size, seed=0)
    next(stream)  # the first batch pays for allocation
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batch_size * batches / (time.perf_counter() - start)


if __name__ == "__main__":
    print(f"{benchmark():,.0f} images/s with {torch.get_num_threads()} threads")
