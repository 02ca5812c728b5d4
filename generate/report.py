"""`ptgen inspect`: what a shard folder holds, and a contact sheet a person can look at."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
from PIL import Image

from ptcommon.cli import InputError
from ptcommon.outputs import check_output_file
from ptcommon.shards import (LABEL_MEMBER, MANIFEST_FILE, META_MEMBER, RERUN, TARGET_CLASS, ReadPolicy, members,
                             part_name, read_header, read_samples, refuse_unexpected, split_member,
                             unexpected_members)

from .plan import WorkPlan
from .store import ShardFolder


def open_folder(root: Path) -> tuple[dict, ShardFolder]:
    header = read_header(root)
    plan = WorkPlan(header["count"], header["shard_size"], header["prefix"])
    return header, ShardFolder(root, plan)


# Of a sample of `ptgen synth --classifier`: how many candidates its slot drew (generate/filtering.py).
CANDIDATES = "candidates"


def _shard_contents(path: Path) -> tuple[int, list[int], Counter]:
    """Samples and labels of one shard, and per class the candidates its samples drew (screened synth
    only), read from its own members (format members only)."""
    keys, labels, drawn = set(), [], Counter()
    with open(path, "rb") as stream:
        for member in members(stream, path.name, ReadPolicy()):
            key, ext = split_member(member["fname"])
            keys.add(key)
            if ext == LABEL_MEMBER:
                labels.append(int(member["data"]))
            elif ext == META_MEMBER:
                meta = json.loads(member["data"])
                if CANDIDATES in meta:
                    drawn[meta["label"]] += meta[CANDIDATES]
    return len(keys), labels, drawn


def summarize(root: Path, strict: bool = False) -> dict:
    """Counts per class, bytes and config, and the shards missing or damaged (`ShardFolder.check`).
    Merges the manifest parts if every shard is there and sound but no rank merged them (a killed
    last rank, or ranks run by hand). The counts come from the manifest where the folder is sound,
    one file; else from each finished shard's part, or where that is gone, from the shard itself."""
    header, folder = open_folder(root)
    names = folder.plan.shard_names()
    landed = folder.landed()
    done = [k for k, name in enumerate(names) if name in landed]
    missing = [names[k] for k in range(len(names)) if names[k] not in landed]
    checks = {k: folder.check(k, landed[names[k]]) for k in done}
    damaged = {names[k]: problem for k, (problem, _) in checks.items() if problem is not None}
    # The tar headers are read only where the shard is not byte for byte the size ptgen recorded for
    # what it wrote (members added since, or no record), or everywhere with STRICT: at a million images
    # reading every header takes minutes, and members outside the format are never decoded anyway.
    scanned = [k for k, (problem, recorded) in checks.items()
               if problem is None and (strict or recorded != landed[names[k]])]
    sound = not missing and not damaged
    if sound and not (root / MANIFEST_FILE).exists():
        folder.merge(header)
    labels: Counter = Counter()
    drawn: Counter = Counter()  # per class: the candidates its samples drew (screened synth only)
    images = 0
    for table in _label_tables(root, folder, done, sound):
        images += table.num_rows
        if "label" in table.column_names:
            labels.update(table.column("label").to_pylist())
        if CANDIDATES in table.column_names:
            for label, n in zip(table.column("label").to_pylist(), table.column(CANDIDATES).to_pylist()):
                drawn[label] += n
    for k in done:
        if sound or (folder.parts.path / part_name(names[k])).exists():
            continue
        count, shard_labels, shard_drawn = _shard_contents(folder.shard_path(k))  # a folder copied without _parts/
        images += count
        labels.update(shard_labels)
        drawn.update(shard_drawn)
    class_names = dict(zip(header.get("class_ids", []), header.get("class_names", [])))
    return {
        "folder": str(root),
        "complete": not missing,
        "shards": folder.plan.num_shards,
        "shards_missing": len(missing),
        "missing": missing,
        "damaged": damaged,
        "images": images,
        "images_planned": header["count"],
        "bytes": sum(landed[names[k]] for k in done),
        "per_class": {f"{c} {class_names.get(c, '')}".strip(): n for c, n in sorted(labels.items())},
        **({"acceptance": _acceptance(labels, drawn, class_names)} if drawn else {}),
        "unexpected_members": unexpected_members(folder.shard_path(k) for k in scanned),
        "shards_scanned": len(scanned),
        "config": {k: v for k, v in header.items() if k not in ("class_names", "class_ids", "model_fingerprint")},
    }


def _label_tables(root: Path, folder: ShardFolder, done: list[int], sound: bool) -> Iterator:
    """The label column (none for unlabeled samples) and the candidates column (screened synth only)
    of the manifest, for a sound folder: one file; else of each finished shard's part that is there."""
    paths = [root / MANIFEST_FILE] if sound else [
        path for k in done if (path := folder.parts.path / part_name(folder.plan.shard_name(k))).exists()]
    for path in paths:
        names = pq.read_schema(path).names
        yield pq.read_table(path, columns=[c for c in ("label", CANDIDATES) if c in names])


def _acceptance(kept: Counter, drawn: Counter, class_names: dict) -> dict:
    """A screened synth folder's samples kept against candidates drawn, overall and per class (by class
    id, as per_class), each with its rate."""
    def rate(k: int, n: int) -> dict:
        return {"kept": k, "drawn": n, "rate": round(k / n, 4)}

    return {**rate(sum(kept.values()), sum(drawn.values())),
            "per_class": {f"{c} {class_names.get(c, '')}".strip(): rate(kept[c], drawn[c]) for c in sorted(drawn)}}


def _row_name(label: int | None, meta: dict) -> str:
    """A row's caption: the class, or for a pseudo sample its target (with the target's class where
    its key does not show it) and the target's top source classes."""
    if label is not None:
        return meta.get("class_name", str(label))
    key, cls = meta.get("target_key", "?"), meta.get(TARGET_CLASS)
    if cls is not None and f"/{cls}/" not in f"/{key}":
        key = f"{key} ({cls})"
    top = ", ".join(f"{c}:{p:.2f}" for c, p in meta.get("top_classes", [])[:3])
    return f"{key}\n{top}" if top else key


class _TargetImages:
    """The --target images of a pseudo folder by key: an ImageFolder's paths under it, or a Hugging
    Face dataset's train rows (listed once, when the sheet asks for the first)."""

    def __init__(self, target: Path):
        self.target, self.rows = target, None

    def __call__(self, key: str) -> Image.Image:
        from ptcommon.hf_data import is_hf

        from .pseudo import open_target, target_images

        if is_hf(self.target):
            if self.rows is None:
                found = target_images(self.target)
                self.rows = dict(zip(found.keys, found.items))
            item = self.rows.get(key)
        else:
            item = self.target / key if key and (self.target / key).is_file() else None
        if item is None:
            raise InputError(f"--target {self.target}: no {key or 'target_key'} in it; give the --target folder the "
                             "pseudo samples were made from")
        return open_target(item).convert("RGB")


def contact_sheet(root: Path, out: Path, rows: int = 10, cols: int = 8, policy: ReadPolicy | None = None,
                  target: Path | None = None) -> Path:
    """Rows are classes (or, for pseudo samples, target images), columns are samples of that row.

    With TARGET (the --target folder of ptgen pseudo), a pseudo row starts with its target image,
    framed in red, so that a person sees what each soft label was made from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    header, folder = open_folder(root)
    landed = folder.landed()
    names = folder.plan.shard_names()
    if not any(name in landed for name in names):
        raise InputError(f"{root}: no finished shard yet, nothing to show")
    # Lazily: the sheet reads the first few shards only. A damaged shard is left out, not read.
    done = (folder.shard_path(k) for k, name in enumerate(names)
            if name in landed and folder.problem(k, landed[name]) is None)
    grid: dict[str, list[Image.Image]] = {}
    framed: set[str] = set()  # rows whose first cell is the target image
    target_image = _TargetImages(target) if target is not None else None
    for sample in read_samples(done, policy):
        label, meta = sample.label, sample.meta
        row = _row_name(label, meta)
        if row not in grid and len(grid) >= rows:
            continue
        if row not in grid and target is not None and label is None:
            grid[row] = [target_image(meta.get("target_key", ""))]
            framed.add(row)
        cells = grid.setdefault(row, [])
        if len(cells) < cols:
            cells.append(sample.image.convert("RGB"))
        if len(grid) >= rows and all(len(c) >= cols for c in grid.values()):
            break
    fig, axes = plt.subplots(len(grid), cols, figsize=(cols * 0.9 + 2.4, len(grid) * 0.9 + 0.3), squeeze=False)
    for r, (name, cells) in enumerate(grid.items()):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("0.6")  # a frame, so that white ink at the border stays visible
            if c < len(cells):
                ax.imshow(cells[c], interpolation="nearest")
        if name in framed:
            for spine in axes[r][0].spines.values():
                spine.set_color("red")
                spine.set_linewidth(2)
        axes[r][0].set_ylabel("\n".join(line[:28] for line in name.split("\n")), rotation=0, ha="right",
                              va="center", fontsize=6)
    grown = f", grown from the targets at strength {header['strength']:g}" if header.get("strength", 1) < 1 else ""
    fig.suptitle(f"{root.name}: {header.get('model', '')}{grown}", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _acceptance_lines(acceptance: dict, cfg: dict, shown: int = 5) -> Iterator[str]:
    """The overall acceptance of a screened synth folder and its SHOWN lowest classes."""
    yield (f"kept by {cfg.get('classifier')} at --min-confidence {cfg.get('min_confidence')}: {acceptance['kept']} "
           f"of {acceptance['drawn']} candidates drawn ({acceptance['rate']:.1%}, "
           f"{acceptance['drawn'] / acceptance['kept']:.2f} a kept image); lowest classes:")
    lowest = sorted(acceptance["per_class"].items(), key=lambda item: item[1]["rate"])[:shown]
    for name, c in lowest:
        yield f"  {c['kept']:6d}/{c['drawn']:<6d} {c['rate']:6.1%}  {name}"


def _problem_lines(missing: list[str], damaged: dict[str, str], shown: int = 10) -> Iterator[str]:
    """One line for the missing shards, one for each damaged one (the first SHOWN), each saying what a rerun does."""
    if missing:
        listed = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        yield (f"missing: {len(missing)} shard{'s' if len(missing) > 1 else ''} ({listed}); rerun the same ptgen "
               "command: it writes only the missing shards and keeps the finished ones")
    for problem in list(damaged.values())[:shown]:
        yield f"damaged: {problem}; {RERUN}"
    if len(damaged) > shown:
        yield f"damaged: ... {len(damaged) - shown} more shards (--json lists all)"


def inspect_folder(folder: Path, grid: Path | None, rows: int, cols: int, target: Path | None, as_json: bool,
                   policy: ReadPolicy) -> Iterator[str]:
    """`ptgen inspect`'s lines: the summary (as JSON, or for a reader), members outside the format, and
    the contact sheet written to GRID."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    if grid is not None:
        check_output_file(grid, "--grid")
    summary = summarize(folder, policy.strict)
    if as_json:
        yield json.dumps(summary, indent=1)
    else:
        cfg = summary["config"]
        counts = list(summary["per_class"].values())
        yield (f"{summary['folder']}: {summary['images']} of {summary['images_planned']} images, "
               f"{summary['shards'] - summary['shards_missing']}/{summary['shards']} shards, "
               f"{summary['bytes'] / 1e6:.1f} MB, {'complete' if summary['complete'] else 'INCOMPLETE'}"
               f"{', DAMAGED' if summary['damaged'] else ''}")
        yield (f"model {cfg.get('model')}  steps {cfg.get('steps')}  guidance {cfg.get('guidance')}  "
               f"seed {cfg.get('seed')}  {cfg.get('image_size')}px  {cfg.get('image_format')}  "
               f"config {cfg.get('config_hash')}  ptgen {cfg.get('version')}")
        if counts:
            yield f"{len(counts)} classes, {min(counts)}..{max(counts)} images each"
            for name, n in list(summary["per_class"].items())[:10]:
                yield f"  {n:6d}  {name}"
            if len(counts) > 10:
                yield f"  ... {len(counts) - 10} more (--json lists all)"
        if "acceptance" in summary:
            yield from _acceptance_lines(summary["acceptance"], cfg)
    if not as_json:
        yield from _problem_lines(summary["missing"], summary["damaged"])
    if policy.strict:
        refuse_unexpected(summary["unexpected_members"], str(folder))
    if not as_json:
        for ext, names in summary["unexpected_members"].items():
            yield (f"not part of the shard format (never decoded): .{ext} members in {len(names)} shards "
                   f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
    if grid is not None:
        yield f"contact sheet: {contact_sheet(folder, grid, rows, cols, policy, target)}"
