"""`pttrain`: the training stage's command line."""

from __future__ import annotations

from pathlib import Path

import click

from ptcommon.cli import Group

from .data import digits as digits_data


@click.group(cls=Group, name="pttrain", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ptgen", prog_name="pttrain")
def main() -> None:
    """Train target classifiers with pseudo pre-training and pseudo semi-supervised learning."""


@main.group()
def data() -> None:
    """Export the built-in target datasets."""


@data.command("digits")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder to write. It must not exist or be empty, unless it already holds this very export "
    "(then nothing is written and the command succeeds) or --overwrite is given.",
)
@click.option(
    "--labels-per-class",
    "labels_per_class",
    type=int,
    default=digits_data.DEFAULT_LABELS_PER_CLASS,
    show_default=True,
    help="Labeled training images per digit, drawn from the training pool. Allowed: 1 up to what the "
    "smallest digit class holds in the pool (87).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Chooses which pool images become the labeled ones. The test half does not depend on it.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a previous digits export in --out (its train/, test/, unlabeled/ and split.json). "
    "A folder holding anything else is still refused.",
)
def digits(out: Path, labels_per_class: int, seed: int, overwrite: bool) -> None:
    """Export scikit-learn's handwritten digits as an ImageFolder tree: the built-in target task.

    The 1,797 real 8x8 digits (values 0..16) become 16x16 grayscale PNGs, upsampled bilinearly,
    ink white on black like the built-in glyphs. The tree under OUT:

    \b
      test/<digit>/<row>.png      a fixed stratified half (899 images), the same for every seed
      train/<digit>/<row>.png     --labels-per-class images per digit, drawn by --seed
      unlabeled/images/<row>.png  the rest of the training pool, labels withheld;
                                  only for the oracle comparison, never for the method
      split.json                  the arguments and the counts per part and per digit

    Digit folders are named 0 to 9; <row> is the image's row in sklearn's load_digits(). The
    parts are disjoint, and the same arguments always give byte-identical files.
    """
    click.echo(digits_data.export(out, labels_per_class, seed, overwrite))
