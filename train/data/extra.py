"""Synthetic images as labeled extra data for a target (--extra-labeled): their labels matched to the
target's classes by name.

A ptgen synth folder names its classes in dataset.json (class_names, beside class_ids), another
tool's labeled set in its _info.json; a ptgen pseudo sample names the class of the target image it
was grown from in its .json (target_class). Every class the extra images name must be a class of
the target: a name it lacks is refused, not dropped, so that a misspelt or foreign class list
cannot quietly shrink the data.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from ptcommon.cli import InputError
from ptcommon.shards import META_MEMBER, TARGET_CLASS, ShardFormatError, scan

from .shards import ShardSet

DEFAULT_EXTRA_WEIGHT = 1.0
_MAX_META_BYTES = 1 << 16  # a pseudo sample's .json is a few hundred bytes
_SHOWN = 4  # names a refusal lists before it counts the rest


@dataclass
class ExtraData:
    """Labeled extra images: their shards, read with the target's head indices as labels, and the
    weight of their loss."""

    shards: ShardSet
    weight: float
    labels: str  # where each sample's class name comes from

    def record(self) -> dict:
        """train.json's account of them."""
        return {"extra_labeled": {"data": str(self.shards.root), "config_hash": self.shards.header.get("config_hash"),
                                  "count": self.shards.count, "classes": len(set(self.shards.index_of.values())),
                                  "labels": self.labels, "weight": self.weight}}


def _listed(names) -> str:
    names = sorted(names)
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(map(repr, names[:_SHOWN])) + more


def _named_in_samples(shards: ShardSet, field: str) -> Counter:
    """How many samples name each class in their .json FIELD (None: name none), from one pass over
    the tar headers that reads the .json members alone."""
    named: Counter = Counter()
    for url in shards.paths:
        try:
            for _, ext, data in scan(url, read=[META_MEMBER], max_bytes=_MAX_META_BYTES):
                if ext == META_MEMBER:
                    meta = json.loads(data) if data is not None else {}
                    named[meta.get(field) if isinstance(meta, dict) else None] += 1
        except (InputError, ShardFormatError):
            raise
        except Exception as err:  # unreadable or damaged: tarfile raises ReadError, EOFError, OSError
            if shards.corrupt.skip:
                continue
            raise InputError(f"{url}: corrupted or unreadable shard ({type(err).__name__}); rerun ptgen on it or "
                             "pass --skip-corrupt") from None
    return named


def match_classes(shards: ShardSet, weight: float, classes: list[str], target: str) -> ExtraData:
    """SHARDS as labeled extra data for the target (TARGET names it) with head classes CLASSES: each
    sample's label becomes the head index of its class name (`ShardSet.index_of`, and for pseudo
    samples `label_field`). Refused in one line: shards without labels, and a class name CLASSES
    lacks (all of them: no class in common)."""
    where = f"--extra-labeled {shards.root}"
    if shards.labeled:
        names = shards.header.get("class_names")
        if not names:
            raise InputError(f"{where}: its labels are class ids without names (a ptgen folder's dataset.json "
                             "class_names, another tool's _info.json), so they cannot be matched to the target's classes")
        by_key, labels = dict(zip(shards.class_ids, names)), "class_names"
    elif shards.made_by_ptgen:
        named = _named_in_samples(shards, TARGET_CLASS)
        if named[None]:
            raise InputError(f"{where}: {named[None]} of its {sum(named.values())} pseudo samples carry no "
                             f"{TARGET_CLASS} (their target images had no labels), so they have no class to train on")
        by_key, labels = {name: name for name in named}, TARGET_CLASS
        shards.label_field = TARGET_CLASS
    else:
        raise InputError(f"{where}: its samples have no labels (no .{shards.layout.label} member); extra data must be "
                         "labeled with the target's class names")
    head = {name: i for i, name in enumerate(classes)}
    unknown = set(by_key.values()) - set(head)
    if unknown == set(by_key.values()):
        raise InputError(f"{where}: none of its {len(unknown)} classes ({_listed(unknown)}) is a class of {target} "
                         f"({_listed(classes)}); label the extra images with the target's class names")
    if unknown:
        raise InputError(f"{where}: {len(unknown)} of its classes are not classes of {target}: {_listed(unknown)}; "
                         f"every class of the extra images must be one of the target's ({_listed(classes)})")
    shards.index_of = {key: head[name] for key, name in by_key.items()}
    return ExtraData(shards, weight, labels)
