"""The glyphs-1k recipe: source classes, renderer and the packaged source classifier."""

import json
import unicodedata

import pytest
import torch

from ptcommon import builtin
from recipes.glyphs_1k import classes as glyph_classes
from recipes.glyphs_1k.class_list import GlyphClass, load_classes
from recipes.glyphs_1k.fonts import FACE_NAMES, candidate_codepoints, common_coverage, face_paths
from recipes.glyphs_1k.render import GlyphRenderer, derive_seed

CLASSIFIER_DIR = builtin.folder("glyphs-1k", "classifier")


@pytest.fixture(scope="module")
def chosen() -> list[GlyphClass]:
    return load_classes()


@pytest.fixture(scope="module")
def renderer(chosen) -> GlyphRenderer:
    return GlyphRenderer([c.codepoint for c in chosen[:12]])


def test_twelve_regular_faces_without_display():
    assert len(FACE_NAMES) == 12 and len(face_paths()) == 12
    assert not any("Display" in name for name in FACE_NAMES)


def test_candidates_are_letters_and_symbols_only():
    candidates = candidate_codepoints()
    assert 2000 < len(candidates) < 2300
    assert all(unicodedata.category(chr(cp))[0] in "LS" for cp in candidates)
    # Digits of any script, numeric letters and other numbers never qualify.
    for numeric in ("0", "7", "\u0663", "\u2166", "\u00bd", "\u2460"):
        assert ord(numeric) not in candidates


def test_classes_file_lists_1000_distinct_covered_glyphs(chosen):
    assert [c.id for c in chosen] == list(range(1000))
    assert len({c.codepoint for c in chosen}) == 1000
    covered = common_coverage()
    for c in chosen:
        assert c.char == chr(c.codepoint)
        assert c.name == unicodedata.name(c.char)
        assert unicodedata.category(c.char)[0] in "LS"
        assert c.codepoint in covered


def test_selection_record_matches_the_classes(chosen):
    record = json.loads(glyph_classes.SELECTION_JSON.read_text(encoding="utf-8"))
    assert record["chosen"] == len(chosen)
    assert record["qualified"] + record["excluded_near_empty"] == record["candidates_covered_letters_symbols"]
    assert record["min_pairwise_distance_chosen"] > 2 * record["min_pairwise_distance_random_mean"]
    excluded = set(record["excluded_near_empty_chars"])
    assert not excluded & {c.char for c in chosen}


def test_chosen_glyphs_have_ink_in_every_face(chosen):
    sample = GlyphRenderer([c.codepoint for c in chosen[::50]])
    assert glyph_classes.ink_pixels(sample).min() >= glyph_classes.MIN_INK_PIXELS


def test_farthest_point_order_picks_the_most_isolated_next():
    points = torch.tensor([[0.0], [1.0], [2.0], [10.0], [9.0]])
    # 10 is farthest from the centroid, then 0 from it; 2 is then 2 away from both, 1 and 9 only 1.
    assert glyph_classes.farthest_point_order(points, 3) == [3, 0, 2]


def test_render_shape_dtype_and_polarity(renderer):
    images = renderer.render(torch.arange(12).repeat(4), seed=3)
    assert images.shape == (48, 1, 16, 16) and images.dtype == torch.uint8
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], -1)
    assert border.float().mean() < images[..., 4:12, 4:12].float().mean()


def test_render_is_a_pure_function_of_seed(renderer):
    labels = torch.tensor([0, 5, 5, 11, 2, 7])
    first = renderer.render(labels, seed=42)
    assert torch.equal(first, renderer.render(labels, seed=42))
    assert not torch.equal(first, renderer.render(labels, seed=43))
    assert torch.equal(first[:3], renderer.render(labels[:3], seed=42))


def test_render_size_is_a_parameter(chosen):
    images = GlyphRenderer([chosen[0].codepoint], size=24).render(torch.zeros(2, dtype=torch.long), seed=0)
    assert images.shape == (2, 1, 24, 24)


def test_render_rejects_unknown_labels(renderer):
    with pytest.raises(ValueError):
        renderer.render(torch.tensor([12]), seed=0)


def test_batches_are_reproducible_and_resumable(renderer):
    stream = renderer.batches(16, seed=9)
    batches = [next(stream) for _ in range(3)]
    images, labels = next(renderer.batches(16, seed=9, start=2))
    assert torch.equal(images, batches[2][0]) and torch.equal(labels, batches[2][1])
    assert derive_seed(9, 2, 1) != derive_seed(9, 1, 2)


def test_packaged_classifier_recognises_fresh_renders(chosen):
    from ptcommon.runfolder import load_run

    model, config = load_run("builtin:glyphs-1k", "--classifier")
    assert config.class_names == [c.name for c in chosen]
    assert config.source_ids == list(range(1000)) and config.in_chans == 1
    assert config.arch != "resnet18"
    assert (CLASSIFIER_DIR / "model.safetensors").stat().st_size < 3_000_000

    # 300 renders of 30 classes spread over the list, from a seed outside training's stream.
    ids = torch.arange(0, 1000, 1000 // 30)[:30]
    subset = GlyphRenderer([chosen[i].codepoint for i in ids], size=config.image_size)
    local = torch.arange(30).repeat(10)
    images = subset.render(local, seed=derive_seed(12345, 0))
    x = (images.float() / 255 - config.mean[0]) / config.std[0]
    with torch.no_grad():
        predicted = model(x).argmax(1)
    accuracy = (predicted == ids[local]).float().mean().item()
    assert accuracy > 0.7, accuracy
