"""Rebuild the whole built-in world `builtin:glyphs-1k` from nothing, with one command:

    python -m recipes.glyphs_1k.build

1. choose the 1000 source classes (classes.json)
2. train the source classifier           -> ptcommon/builtin/glyphs-1k/classifier/
3. train the generator                   -> ptcommon/builtin/glyphs-1k/generator/
4. measure class consistency on all classes, and draw the contact sheet under docs/

Every step resumes from its checkpoint when the command is repeated (work files lie under
--work). The time of each step is written to build.json in the work folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from ptcommon import builtin

from . import classes as classes_step
from . import train_classifier, train_generator
from .consistency import main as consistency_main
from .sheet import contact_sheet

ROOT = Path(__file__).resolve().parents[2]
CLASSIFIER_DIR = builtin.folder("glyphs-1k", "classifier")
GENERATOR_DIR = builtin.folder("glyphs-1k", "generator")
SHEET = ROOT / "docs" / "glyphs-1k-samples.png"
# Chosen by measurement (docs/results.md, "The built-in generator: what ships, and why"): 5
# DPM-Solver++ steps at guidance 2 match 10 and 20 in consistency, fidelity and transfer at
# twice the speed of 10, and unlike 3 steps they hold up across guidance 1.5-3.
SHIPPED_DEFAULTS = {"steps": 5, "guidance": 2.0}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "build-glyphs-1k")
    ap.add_argument("--classifier-minutes", type=float, default=7.0)
    ap.add_argument("--generator-minutes", type=float, default=70.0)
    ap.add_argument("--recipe", default="small+template")
    ap.add_argument("--skip-classes", action="store_true", help="keep the committed classes.json")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def timed(name: str, fn) -> None:
        start = time.perf_counter()
        fn()
        timings[name] = round((time.perf_counter() - start) / 60, 2)
        (args.work / "build.json").write_text(json.dumps({"minutes": timings, "args": vars(args)}, default=str, indent=1))
        print(f"== {name}: {timings[name]} min", flush=True)

    if not args.skip_classes:
        timed("classes", lambda: classes_step.main([]))
    timed("classifier", lambda: train_classifier.main(
        ["--out", str(args.work / "classifier"), "--minutes", str(args.classifier_minutes)]))
    timed("generator", lambda: train_generator.main(
        ["--recipe", args.recipe, "--out", str(args.work / "generator"), "--minutes", str(args.generator_minutes),
         "--eval-at", "", "--classifier", str(args.work / "classifier")]))

    def install() -> None:
        for src, dst in ((args.work / "classifier", CLASSIFIER_DIR), (args.work / "generator" / "model", GENERATOR_DIR)):
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint*"))
        meta_path = GENERATOR_DIR / "ptgen.json"
        meta = json.loads(meta_path.read_text())
        meta["defaults"] = SHIPPED_DEFAULTS
        meta_path.write_text(json.dumps(meta, indent=1))

    timed("install", install)
    timed("consistency", lambda: consistency_main(
        ["--model", str(GENERATOR_DIR), "--classifier", str(CLASSIFIER_DIR), "--per-class", "2"]))
    timed("contact sheet", lambda: contact_sheet(GENERATOR_DIR, SHEET))
    print(json.dumps(timings), flush=True)


if __name__ == "__main__":
    main()
