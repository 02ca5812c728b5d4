"""The generator interface on a diffusers UNet: hard and soft labels, guidance, per-sample seeds."""

import numpy as np
import pytest
import torch

from generate.models import load_generator


@pytest.fixture(scope="module")
def gen(tiny_model):
    return load_generator(str(tiny_model))


def test_metadata(gen):
    assert (gen.num_classes, gen.image_size, gen.channels) == (5, 8, 1)
    assert gen.class_names[2] == "tiny class 2"
    assert gen.supports_guidance and gen.defaults.steps == 4


def test_one_hot_soft_label_equals_hard_label(gen):
    hard = gen.sample(torch.tensor([3, 1]), [11, 12], steps=4, guidance=2.0)
    soft = gen.sample(torch.eye(5)[[3, 1]], [11, 12], steps=4, guidance=2.0)
    assert hard.dtype == np.uint8 and hard.shape == (2, 8, 8, 1)
    np.testing.assert_array_equal(hard, soft)


def test_mixture_differs_from_both_classes(gen):
    a, b = gen.sample(torch.tensor([0, 4]), [5, 5], steps=4, guidance=2.0)
    mix = gen.sample(torch.tensor([[0.5, 0, 0, 0, 0.5]]), [5], steps=4, guidance=2.0)[0]
    assert not np.array_equal(mix, a) and not np.array_equal(mix, b)


def test_soft_label_is_the_mixture_of_embedding_rows(gen):
    p = torch.tensor([[0.2, 0.0, 0.5, 0.3, 0.0]])
    rows = gen.class_embedding(torch.tensor([0, 2, 3]))
    expected = 0.2 * rows[0] + 0.5 * rows[1] + 0.3 * rows[2]
    torch.testing.assert_close(gen.class_embedding(p)[0], expected)


def test_each_image_depends_only_on_its_seed(gen):
    together = gen.sample(torch.tensor([0, 1, 2]), [7, 8, 9], steps=4, guidance=2.0)
    alone = gen.sample(torch.tensor([1]), [8], steps=4, guidance=2.0)
    np.testing.assert_array_equal(together[1], alone[0])
    again = gen.sample(torch.tensor([1]), [9], steps=4, guidance=2.0)
    assert not np.array_equal(again[0], alone[0])


def test_guidance_changes_the_image(gen):
    plain = gen.sample(torch.tensor([2]), [3], steps=4, guidance=1.0)
    guided = gen.sample(torch.tensor([2]), [3], steps=4, guidance=3.0)
    assert not np.array_equal(plain, guided)


def test_bad_conditions_are_refused(gen):
    with pytest.raises(ValueError, match="shape"):
        gen.sample(torch.ones(1, 4) / 4, [0], steps=2, guidance=1.0)
    with pytest.raises(ValueError, match="class ids"):
        gen.sample(torch.tensor([5]), [0], steps=2, guidance=1.0)


def test_ancestral_scheduler_is_seeded_per_sample(tmp_path):
    from tiny_models import save_tiny_unet

    gen = load_generator(str(save_tiny_unet(tmp_path / "ddpm", scheduler="DDPMScheduler")))
    together = gen.sample(torch.tensor([0, 1]), [1, 2], steps=5, guidance=2.0)
    alone = gen.sample(torch.tensor([1]), [2], steps=5, guidance=2.0)
    np.testing.assert_array_equal(together[1], alone[0])


@pytest.mark.parametrize("scheduler", ["PNDMScheduler", "UniPCMultistepScheduler"])
def test_a_scheduler_whose_steps_draw_nothing_samples_too(tmp_path, scheduler):
    """PNDM and UniPC take no generator in their steps (they draw no noise there): a folder of
    either samples, each image still its own seed's alone."""
    from tiny_models import save_tiny_unet

    gen = load_generator(str(save_tiny_unet(tmp_path / "model", scheduler=scheduler)))
    together = gen.sample(torch.tensor([0, 1]), [1, 2], steps=5, guidance=2.0)
    alone = gen.sample(torch.tensor([1]), [2], steps=5, guidance=2.0)
    np.testing.assert_array_equal(together[1], alone[0])


def test_template_channel_follows_the_soft_label(tmp_path):
    from tiny_models import save_tiny_unet

    gen = load_generator(str(save_tiny_unet(tmp_path / "tpl", template=True)))
    assert gen.channels == 1
    hard = gen.sample(torch.tensor([2, 0]), [4, 4], steps=3, guidance=2.0)
    soft = gen.sample(torch.eye(5)[[2, 0]], [4, 4], steps=3, guidance=2.0)
    np.testing.assert_array_equal(hard, soft)
    mix = gen.sample(torch.tensor([[0.5, 0, 0.5, 0, 0]]), [4], steps=3, guidance=2.0)[0]
    assert not np.array_equal(mix, hard[0]) and not np.array_equal(mix, hard[1])
