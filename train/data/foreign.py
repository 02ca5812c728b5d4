"""WebDataset shards made by other tools (img2dataset, timm's `wds` layout, a published set), named
by a brace list such as `s3://bucket/set/train-{000000..000099}.tar`.

They have no dataset.json, so what ptgen's header says is found here instead: the members to read
(--image-key, --label-key), the class names (--class-names, or `class_names` in the set's own
`_info.json`), and the sample count and label range, from one pass over the tar headers (labels
are a few bytes each). Their members go through the same reader as ptgen's shards
(ptcommon/shards.py): the same size limits, skipping and --strict.
"""

from __future__ import annotations

import json
from pathlib import Path

from ptcommon.cli import InputError
from ptcommon.inputs import read_class_names
from ptcommon.shards import (INFO_FILE, META_MEMBER, READABLE_IMAGES, ForeignKeys, Layout, ReadPolicy,
                             ShardFormatError, open_image, parse_label, refuse_unexpected, scan)
from ptcommon.storage import Location, check_scheme

from .shards import CorruptCounter, ShardSet

def is_foreign(spec: str) -> bool:
    """A brace list of tars, or one tar: what names shards from elsewhere (a ptgen folder is a folder)."""
    return "{" in spec or spec.endswith(".tar")


def expand(spec: str, flag: str) -> list[str]:
    """The shard URLs a brace list names, each of an accepted scheme and present; one line if none is."""
    from braceexpand import braceexpand

    check_scheme(spec, flag)
    urls = list(braceexpand(spec))
    folders: dict[str, list[str]] = {}
    for url in urls:
        folders.setdefault(url.rsplit("/", 1)[0] if "/" in url else ".", []).append(url)
    missing = []
    for folder, members in folders.items():
        listed = Location(folder, flag).names()
        present = (lambda u: u.rsplit("/", 1)[-1] in listed) if listed is not None else (
            lambda u: Location(folder, flag).exists(u.rsplit("/", 1)[-1]))
        missing += [u for u in members if not present(u)]
    if len(missing) == len(urls):
        raise InputError(f"{flag} {spec}: matches no object ({len(urls)} names, such as {urls[0]})")
    if missing:
        raise InputError(f"{flag} {spec}: {len(missing)} of {len(urls)} shards missing ({missing[0]}, ...)")
    return [url if "/" in url else str(Path(url).resolve()) for url in urls]


class ForeignShards(ShardSet):
    """A WebDataset set from another tool, read like a ptgen folder (pipeline, label mapping)."""

    made_by_ptgen = False

    def __init__(self, spec: str, flag: str, labeled: bool | None, policy: ReadPolicy | None, skip_corrupt: bool,
                 keys: ForeignKeys):
        self.root, self.policy, self.corrupt = spec, policy or ReadPolicy(), CorruptCounter(skip_corrupt)
        where = f"{flag} {spec}"
        images = (keys.image_key,) if keys.image_key else READABLE_IMAGES
        if keys.label_key in (*READABLE_IMAGES, META_MEMBER):
            raise InputError(f"--label-key {keys.label_key}: names an image or the metadata; give the member that "
                             "holds the class id (cls for most sets)")
        self.layout = Layout(images=images, label=keys.label_key)
        self.paths = expand(spec, flag)
        count, labels, extensions = self._count(where)
        if count == 0:
            raise InputError(f"{where}: holds no sample with a {'/'.join(images)} image; its members are "
                             f"{_listed(extensions)}")
        if self.policy.strict:
            found = {ext: ["(this set)"] for ext in extensions if ext not in self.layout.members}
            refuse_unexpected(found, where)
        self.labeled = bool(labels)
        if labeled and not self.labeled:
            raise InputError(f"{where}: its samples have no .{keys.label_key} member (--label-key "
                             f"{keys.label_key}); they have {_listed(extensions)}: name the label member with "
                             "--label-key")
        self.count = count
        top = max(labels, default=-1)
        named = self._class_names(keys, top, flag)
        self.class_names = named or [str(i) for i in range(top + 1)]
        self.class_ids = list(range(len(self.class_names)))
        self.index_of = {i: i for i in self.class_ids}
        self.image_size, self.channels = self._peek(where)
        # What a dataset.json would say; class_names only where the set names its classes.
        self.header = {"count": count, "image_size": self.image_size, "channels": self.channels, "labeled": self.labeled,
                       **({"class_names": named} if named else {})}

    def _count(self, where: str) -> tuple[int, list[int], set[str]]:
        """Samples with an image, their labels and every member extension, from one pass over the headers."""
        count, labels, extensions = 0, [], set()
        for url in self.paths:
            keyed: set[str] = set()
            try:
                for key, ext, data in scan(url, read=[self.layout.label]):
                    extensions.add(ext)
                    if ext in self.layout.images:
                        keyed.add(key)
                    elif ext == self.layout.label:
                        label = parse_label(data) if data is not None else None
                        if label is None:
                            raise InputError(f"{url}: sample {key}: .{ext} is not a decimal class id (--label-key "
                                             f"{ext})")
                        labels.append(label)
            except (InputError, ShardFormatError):
                raise
            except Exception as err:  # unreadable or damaged: tarfile raises ReadError, EOFError, OSError
                raise InputError(f"{url}: corrupted or unreadable shard ({type(err).__name__}: "
                                 f"{str(err)[:80]})") from None
            count += len(keyed)
        return count, labels, extensions

    def _class_names(self, keys: ForeignKeys, top: int, flag: str) -> list[str] | None:
        """--class-names, else the set's _info.json `class_names`, else None (the set names no class);
        every label must have one."""
        if keys.class_names is not None:
            names = read_class_names(keys.class_names)
            source = f"--class-names {keys.class_names}"
        else:
            folder = Location(self.paths[0].rsplit("/", 1)[0], flag)
            info = json.loads(folder.read_bytes(INFO_FILE)) if folder.exists(INFO_FILE) else {}
            names = info.get("class_names") if isinstance(info, dict) else None
            if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                return None
            source = f"{folder}/{INFO_FILE}"
        if top >= len(names):
            raise InputError(f"{source}: names {len(names)} classes, but {flag} {self.root} holds class id {top}")
        return names

    def _peek(self, where: str) -> tuple[int, int]:
        """The first image's size and channels (1 for grayscale, else 3): what a new model is built for."""
        for url in self.paths:
            for key, ext, data in scan(url, read=self.layout.images, max_bytes=self.policy.max_member_bytes):
                if data is not None:
                    image = open_image(data, f"{url}: sample {key}", ext)
                    return max(image.size), 1 if image.mode in ("L", "1", "I", "I;16") else 3
        raise InputError(f"{where}: no image under the --max-member-mb limit")


def _listed(extensions: set[str]) -> str:
    return ", ".join(f".{e}" for e in sorted(extensions)) or "no members"
