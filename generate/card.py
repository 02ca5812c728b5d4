"""`ptgen card`: a shard folder's README.md as a Hugging Face dataset card.

Its YAML front matter is what `datasets.load_dataset(FOLDER)` and the hub's viewer read: the
shards as the train split, the image member as an Image and `.cls` as a ClassLabel over the
generator's class ids, named. The body says what made the images: the generator and its
fingerprint, the sampling settings and config hash, the count and the format, and the license
the generator's own card states.

The card replaces a README.md only when ptgen wrote it, known by WRITER_KEY in its front matter:
the folder may be the repository's own `shards/` or hold a README its user wrote.

YAML is written by hand: every scalar goes through `json.dumps`, and a JSON string is a valid
YAML double-quoted scalar, so no YAML library is needed.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ptcommon import builtin
from ptcommon.cli import InputError
from ptcommon.shards import DATASET_FILE, read_header, shard_glob

CARD_FILE = "README.md"
# Only ptgen writes this line, so its presence is what lets a later `ptgen card` replace the file.
WRITER_KEY, WRITER = "written_by", "ptgen card"
_SAMPLING = ("steps", "guidance", "seed", "dtype", "image_format", "quality", "per_class", "per_target",
             "temperature", "top_k", "condition", "classifier")


def _q(value) -> str:
    return json.dumps(value)


def generator_license(spec: str) -> str | None:
    """The `license:` of the generator folder's own card (its README.md front matter), if it has one."""
    folder = builtin.folder(spec[len(builtin.PREFIX):], "generator") if builtin.is_builtin(spec) else Path(spec)
    card = folder / CARD_FILE if folder.is_dir() else None
    if card is None or not card.is_file():
        return None
    front = re.match(r"^---\n(.*?)\n---", card.read_text(errors="replace"), re.S)
    found = re.search(r"^license:\s*[\"']?([^\"'\n]+)", front[1], re.M) if front else None
    return found[1].strip() if found else None


def fingerprint_digest(header: dict) -> str:
    """SHA-256 (16 hex digits) of the model fingerprint dataset.json holds: one line for what identifies the model."""
    canonical = json.dumps(header.get("model_fingerprint"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def front_matter(header: dict, license: str | None) -> str:
    fmt, labeled = header.get("image_format", "png"), bool(header.get("labeled"))
    lines = ["---", f"# {WRITER} replaces this file when run again; delete the next line to keep your edits",
             f"{WRITER_KEY}: {_q(WRITER)}", f"license: {_q(license or 'other')}",
             f"pretty_name: {_q(header['prefix'] + '-' + header['config_hash'])}",
             "task_categories:", f"- {'image-classification' if labeled else 'unconditional-image-generation'}",
             "tags:", "- synthetic", "- ptgen", "configs:", "- config_name: default", "  data_files:",
             "  - split: train", f"    path: {_q(shard_glob(header['prefix']))}", "dataset_info:", "  features:",
             f"  - name: {fmt}", "    dtype: image"]
    if labeled:
        # ClassLabel indexes names by the value in `.cls`: the generator's class id, so every id up to
        # the largest needs a name, those outside this dataset included.
        named = dict(zip(header["class_ids"], header["class_names"]))
        lines += ["  - name: cls", "    dtype:", "      class_label:", "        names:"]
        lines += [f"          {_q(str(i))}: {_q(named.get(i, f'(class {i}, not in this dataset)'))}"
                  for i in range(max(header["class_ids"]) + 1)]
    lines.append("---")
    return "\n".join(lines) + "\n"


def body(header: dict, license: str | None) -> str:
    settings = ", ".join(f"{k} {header[k]}" for k in _SAMPLING if header.get(k) is not None)
    kind = "labeled class-conditional samples (`ptgen synth`)" if header.get("labeled") else \
        "unlabeled target-conditioned samples (`ptgen pseudo`)"
    classes = f"{header.get('num_classes')} classes of the generator's {header.get('model_num_classes')}" \
        if header.get("labeled") else f"{header.get('num_targets')} target images"
    rows = [("generator", f"`{header.get('model')}`"),
            ("generator fingerprint", f"`{fingerprint_digest(header)}` (SHA-256 of dataset.json's model_fingerprint)"),
            ("sampling", settings), ("config hash", f"`{header['config_hash']}`"),
            ("images", f"{int(header['count']):,} ({classes})"),
            ("format", f"{header.get('image_size')} px {header.get('image_format')}, {header.get('channels')} "
                       f"channel(s), WebDataset shards of {header['shard_size']} (`{shard_glob(header['prefix'])}`)"),
            ("license", license or "no license found in the generator folder's own card: check the "
                                   "generator's terms before you publish these images"),
            ("made with", f"ptgen {header.get('version')}")]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (f"\n# {header['prefix']}-{header['config_hash']}\n\nSynthetic images: {kind}, sampled from a "
            f"pre-trained generator by ptgen.\n\n| | |\n|---|---|\n{table}\n\n"
            f"`dataset.json` holds the full configuration; each sample's `.json` its index and seed. "
            "Load it with `datasets.load_dataset(\"PATH-OR-REPO\")`.\n")


def written_by_ptgen(path: Path) -> bool:
    """Whether the file's front matter holds the line only `ptgen card` writes."""
    front = re.match(r"^---\n(.*?)\n---", path.read_text(errors="replace"), re.S)
    return bool(front and re.search(rf"^{WRITER_KEY}:\s*{re.escape(_q(WRITER))}\s*$", front[1], re.M))


def write_card(folder: Path, out: Path | None = None, overwrite: bool = False) -> Path:
    """The dataset card of a complete shard folder, at OUT (default FOLDER/README.md); returns its path.

    An existing file at OUT is replaced only if ptgen wrote it, or with `overwrite`.
    """
    if not (folder / DATASET_FILE).is_file():
        raise InputError(f"{folder}: no {DATASET_FILE}; ptgen card takes a folder written by ptgen synth or ptgen pseudo")
    card = folder / CARD_FILE if out is None else out
    if card.is_dir():
        raise InputError(f"{card}: is a folder; --out names the card's file, e.g. {card / CARD_FILE}")
    if card.exists() and not overwrite and not written_by_ptgen(card):
        raise InputError(f"{card}: exists and ptgen did not write it (no `{WRITER_KEY}: {_q(WRITER)}` in its front "
                         f"matter); write the card elsewhere with --out FILE, or replace this file with --overwrite")
    header = read_header(folder)
    license = generator_license(str(header.get("model", "")))
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text(front_matter(header, license) + body(header, license))
    return card
