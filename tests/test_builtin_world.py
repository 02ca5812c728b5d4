"""The shipped built-in world: the generator loads offline with diffusers' own calls, and its
samples are recognised by the shipped classifier well above chance."""

import json

import torch

from generate.models import builtin_info, load_generator
from ptcommon import builtin
from recipes.glyphs_1k.consistency import class_consistency, frechet_distance, load_classifier, render_features

GENERATOR = builtin.folder("glyphs-1k", "generator")
CLASSIFIER = builtin.folder("glyphs-1k", "classifier")


def test_generator_folder_loads_with_diffusers_from_pretrained():
    import diffusers
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(GENERATOR, subfolder="unet")
    assert unet.config.num_class_embeds == 1001 and unet.config.sample_size == 16
    config = json.loads((GENERATOR / "scheduler" / "scheduler_config.json").read_text())
    scheduler = getattr(diffusers, config["_class_name"]).from_pretrained(GENERATOR, subfolder="scheduler")
    assert scheduler.config.prediction_type == "v_prediction"
    meta = json.loads((GENERATOR / "ptgen.json").read_text())
    assert meta["null_class"] and len(meta["class_names"]) == 1000


def test_builtin_spec_resolves_and_matches_the_classifier_classes():
    info = builtin_info("glyphs-1k")
    assert info["installed"] and info["num_classes"] == 1000 and info["image_size"] == 16
    assert info["backend"] == "unet" and info["channels"] == 1
    _, config = load_classifier(CLASSIFIER)
    meta = json.loads((GENERATOR / "ptgen.json").read_text())
    assert config.class_names == meta["class_names"]


def test_builtin_samples_are_recognised_by_the_builtin_classifier():
    gen = load_generator("builtin:glyphs-1k")
    classifier, config = load_classifier(CLASSIFIER)
    ids = list(range(0, 1000, 50))  # 20 classes, 2 samples each
    result = class_consistency(gen, classifier, config, ids, per_class=2,
                               steps=gen.defaults.steps, guidance=gen.defaults.guidance)
    assert result.top1 >= 0.5, result  # chance is 0.001


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    # For diagonal covariances the FID formula reduces to |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2.
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20_000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    b = torch.randn(20_000, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 2.0, 0.5]) + 1.0
    assert abs(frechet_distance(a, a)) < 1e-6
    assert abs(frechet_distance(a, b) - (3 * 1.0 + (3.0 - 1.0) ** 2)) < 0.2


def test_frechet_distance_separates_right_classes_from_wrong_ones():
    classifier, config = load_classifier(CLASSIFIER)
    ids = list(range(0, 1000, 10))
    reference = render_features(classifier, config, ids, per_class=2)
    same = frechet_distance(render_features(classifier, config, ids, per_class=2, seed=1), reference)
    shifted = frechet_distance(render_features(classifier, config, [i + 5 for i in ids], per_class=2), reference)
    assert same < 0.5 * shifted, (same, shifted)


def test_soft_label_path_works_on_the_builtin():
    gen = load_generator("builtin:glyphs-1k")
    p = torch.zeros(1, 1000)
    p[0, 3], p[0, 7] = 0.5, 0.5
    image = gen.sample(p, [0], steps=gen.defaults.steps, guidance=gen.defaults.guidance)
    assert image.shape == (1, 16, 16, 1)


def test_contact_sheet_puts_one_panel_per_sampling_setting(tmp_path):
    from PIL import Image

    from recipes.glyphs_1k.sheet import contact_sheet, parse_settings

    one = Image.open(contact_sheet(GENERATOR, tmp_path / "one.png", rows=2, cols=2))
    three = Image.open(contact_sheet(GENERATOR, tmp_path / "three.png", rows=2, cols=2,
                                     settings=parse_settings("2/1,3/2")))
    assert three.size[0] > one.size[0] and three.size[1] == one.size[1]
