"""The DiT backend on tiny random DiT pipelines: labels into every block, guidance, seeds, folders."""

import json
import shutil

import numpy as np
import pytest
import torch

from generate.backends.dit import DiTGenerator
from generate.conditioning import mix
from ptcommon.cli import InputError
from tiny_models import save_tiny_dit

STEPS = 4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dit10(tmp_path_factory):
    return save_tiny_dit(tmp_path_factory.mktemp("dit10") / "model")


@pytest.fixture(scope="module")
def dit1000(tmp_path_factory):
    return save_tiny_dit(tmp_path_factory.mktemp("dit1000") / "model", num_classes=1000)


@pytest.fixture(scope="module")
def gen(dit10):
    return DiTGenerator(dit10)


def _latents_and_t(gen, batch):
    x = torch.randn(batch, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    return x, torch.full((batch,), 500)


def test_metadata(gen):
    assert (gen.num_classes, gen.image_size, gen.channels) == (10, 8, 3)
    assert gen.class_labels(torch.tensor([3]), guided=True).tolist() == [3, 10]  # null = row 10, not 1000
    assert gen.class_names[3] == "tiny class 3, synonym 3"
    assert gen.supports_guidance
    assert (gen.defaults.steps, gen.defaults.guidance) == (25, 1.5)


def test_class_names_fall_back_and_must_cover_the_classes(dit10, tmp_path):
    folder = shutil.copytree(dit10, tmp_path / "copy")
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    del index["id2label"]
    index_path.write_text(json.dumps(index))
    assert DiTGenerator(folder).class_names == [f"class_{i}" for i in range(10)]
    index["id2label"] = {str(i): f"c{i}" for i in range(9)}
    index_path.write_text(json.dumps(index))
    with pytest.raises(InputError, match="id2label names 9 classes but the transformer has 10"):
        DiTGenerator(folder)


def test_hard_labels_match_the_untouched_transformer(gen, dit10):
    from diffusers import DiTTransformer2DModel

    original = DiTTransformer2DModel.from_pretrained(dit10, subfolder="transformer").eval()
    x, t = _latents_and_t(gen, 4)
    labels = torch.tensor([1, 9, 10, 10])  # two classes, then the null class
    with torch.no_grad():
        ours = gen.transformer(x, timestep=t, class_labels=labels).sample
        theirs = original(x, timestep=t, class_labels=labels).sample
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("guided", [False, True])
def test_one_hot_soft_label_equals_hard_label_bit_for_bit(gen, guided):
    hard_labels = gen.class_labels(torch.tensor([3, 7]), guided)
    soft_labels = gen.class_labels(torch.eye(10)[[3, 7]], guided)
    x, t = _latents_and_t(gen, len(hard_labels))
    with torch.no_grad():
        hard_out = gen.transformer(x, timestep=t, class_labels=hard_labels).sample
        soft_out = gen.transformer(x, timestep=t, class_labels=soft_labels).sample
    assert torch.equal(hard_out, soft_out)

    guidance = 1.5 if guided else 1.0
    hard = gen.sample(torch.tensor([3, 7]), [11, 12], steps=STEPS, guidance=guidance)
    soft = gen.sample(torch.eye(10)[[3, 7]], [11, 12], steps=STEPS, guidance=guidance)
    assert hard.dtype == np.uint8 and hard.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(hard, soft)


def test_a_mixture_reaches_every_block_and_the_final_layer(gen):
    transformer = gen.transformer
    blocks = list(transformer.transformer_blocks)
    seen: dict[str, list[torch.Tensor]] = {}

    def keep(name):
        def hook(module, args, output=None):
            tensor = output if output is not None else args[0]
            seen.setdefault(name, []).append(tensor.detach().clone())

        return hook

    handles = [b.register_forward_hook(keep(f"block{i}")) for i, b in enumerate(blocks)]
    handles += [b.norm1.emb.class_embedder.register_forward_hook(keep(f"label{i}")) for i, b in enumerate(blocks)]
    handles.append(transformer.proj_out_1.register_forward_pre_hook(keep("final")))
    p = torch.zeros(1, 10)
    p[0, 2], p[0, 6] = 0.5, 0.5
    x, t = _latents_and_t(gen, 1)
    try:
        with torch.no_grad():
            for labels in (gen.class_labels(torch.tensor([2]), False), gen.class_labels(p, False)):
                transformer(x, timestep=t, class_labels=labels)
    finally:
        for handle in handles:
            handle.remove()

    for name in [f"block{i}" for i in range(len(blocks))] + ["final"]:
        hard, mixed = seen[name]
        assert not torch.allclose(hard, mixed), f"{name} ignores the mixture"
    for i, block in enumerate(blocks):
        table = block.norm1.emb.class_embedder.embedding_table.weight
        calls = seen[f"label{i}"]  # one per forward pass; block 0's twice, as the final layer uses it again
        for hard in calls[: len(calls) // 2]:
            torch.testing.assert_close(hard[0], table[2], rtol=0, atol=0)
        for mixed in calls[len(calls) // 2 :]:
            torch.testing.assert_close(mixed[0], 0.5 * table[2] + 0.5 * table[6])
    assert len(seen["label0"]) == 4 and len(seen["label1"]) == 2
    assert not torch.equal(blocks[0].norm1.emb.class_embedder.embedding_table.weight,
                           blocks[1].norm1.emb.class_embedder.embedding_table.weight)


def test_mixture_differs_from_both_classes(gen):
    a, b = gen.sample(torch.tensor([0, 4]), [5, 5], steps=STEPS, guidance=1.5)
    mix = gen.sample(torch.tensor([[0.5, 0, 0, 0, 0.5, 0, 0, 0, 0, 0]]), [5], steps=STEPS, guidance=1.5)[0]
    assert not np.array_equal(mix, a) and not np.array_equal(mix, b)


def test_guidance_changes_the_image(gen):
    plain = gen.sample(torch.tensor([2]), [3], steps=STEPS, guidance=1.0)
    guided = gen.sample(torch.tensor([2]), [3], steps=STEPS, guidance=4.0)
    assert not np.array_equal(plain, guided)


def test_each_image_depends_only_on_its_seed(gen):
    condition = torch.tensor([1, 2, 3])
    together = gen.sample(condition, [7, 8, 9], steps=STEPS, guidance=1.5)
    one = gen.sample(condition[:1], [7], steps=STEPS, guidance=1.5)
    two = gen.sample(condition[1:], [8, 9], steps=STEPS, guidance=1.5)
    np.testing.assert_array_equal(together, np.concatenate([one, two]))
    assert not np.array_equal(gen.sample(condition[:1], [8], steps=STEPS, guidance=1.5), one)


def test_ancestral_sampler_with_learned_variance_is_seeded_per_sample(dit10, tmp_path):
    folder = shutil.copytree(dit10, tmp_path / "ddpm")
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config.update(_class_name="DDPMScheduler", variance_type="learned_range")
    config_path.write_text(json.dumps(config))
    gen = DiTGenerator(folder, sampler=None)
    assert gen._pass_variance
    condition = torch.tensor([[0.25] * 4 + [0] * 6, [0] * 9 + [1.0], [0.1] * 10])
    together = gen.sample(condition, [1, 2, 3], steps=5, guidance=1.5)
    apart = [gen.sample(condition[i : i + 1], [seed], steps=5, guidance=1.5) for i, seed in enumerate([1, 2, 3])]
    np.testing.assert_array_equal(together, np.concatenate(apart))
    # DPM-Solver's "learned" mode would keep 3 of the 4 latent channels: the default sampler drops it.
    assert not DiTGenerator(folder)._pass_variance


def test_thousand_classes_use_row_1000_as_null_and_match_dit_pipeline(dit1000):
    from diffusers import DiTPipeline, DPMSolverMultistepScheduler

    gen = DiTGenerator(dit1000)
    assert gen.num_classes == 1000 and gen.supports_guidance
    ours = gen.sample(torch.tensor([417]), [7], steps=STEPS, guidance=1.5)
    pipe = DiTPipeline.from_pretrained(dit1000)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(class_labels=[417], guidance_scale=1.5, generator=torch.Generator().manual_seed(7),
                  num_inference_steps=STEPS, output_type="np").images
    assert np.abs(ours.astype(int) - np.round(theirs * 255)).max() <= 1
    soft = gen.sample(torch.eye(1000)[[417]], [7], steps=STEPS, guidance=1.5)
    np.testing.assert_array_equal(ours, soft)
    unguided = gen.sample(torch.tensor([417]), [7], steps=STEPS, guidance=1.0)
    assert not np.array_equal(unguided, ours)
    mixed = gen.sample(torch.full((1, 1000), 1e-3), [7], steps=STEPS, guidance=1.5)
    assert not np.array_equal(mixed, ours)


def test_without_learned_sigma(tmp_path):
    folder = save_tiny_dit(tmp_path / "eps", num_classes=3, learned_sigma=False)
    gen = DiTGenerator(folder)
    images = gen.sample(torch.tensor([0, 2]), [1, 2], steps=STEPS, guidance=2.0)
    assert images.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(images, gen.sample(torch.eye(3)[[0, 2]], [1, 2], steps=STEPS, guidance=2.0))
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config.update(_class_name="DDPMScheduler", variance_type="learned")
    config_path.write_text(json.dumps(config))
    with pytest.raises(InputError, match="reads a learned variance"):
        DiTGenerator(folder, sampler=None)


def test_mix_picks_rows_or_mixes_them_over_any_trailing_shape():
    table = torch.randn(4, 2, 3)  # 3 classes and a null row
    ids = torch.tensor([2, 0, 3])
    torch.testing.assert_close(mix(table, ids, 4), table[[2, 0, 3]], rtol=0, atol=0)
    assert torch.equal(mix(table, torch.eye(3)[[2, 0]], 3), table[[2, 0]])
    p = torch.tensor([[0.2, 0.0, 0.8]])
    torch.testing.assert_close(mix(table, p, 3), (0.2 * table[0] + 0.8 * table[2])[None])
    with pytest.raises(ValueError, match="shape"):
        mix(table, torch.ones(1, 4) / 4, 3)  # probabilities never reach the null row
    with pytest.raises(ValueError, match="class ids"):
        mix(table, torch.tensor([3]), 3)


def test_bad_conditions_are_refused(gen):
    with pytest.raises(ValueError, match="shape"):
        gen.sample(torch.ones(1, 9) / 9, [0], steps=2, guidance=1.0)
    with pytest.raises(ValueError, match="class ids"):
        gen.sample(torch.tensor([10]), [0], steps=2, guidance=1.0)  # the null row is not a class
    with pytest.raises(ValueError, match="seeds"):
        gen.sample(torch.tensor([1, 2]), [0], steps=2, guidance=1.0)


def test_fingerprint_survives_a_move_but_not_new_weights(gen, dit10, tmp_path):
    from safetensors.torch import load_file, save_file

    moved = shutil.copytree(dit10, tmp_path / "elsewhere" / "dit")
    assert DiTGenerator(moved).fingerprint() == gen.fingerprint()
    json.dumps(gen.fingerprint())
    assert gen.fingerprint()["scheduler"]["class"] == "DPMSolverMultistepScheduler"
    weights = moved / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors["decoder.conv_out.bias"] += 1
    save_file(tensors, weights)
    changed = DiTGenerator(moved).fingerprint()
    assert changed["vae_sha256"] != gen.fingerprint()["vae_sha256"]
    assert changed["transformer_sha256"] == gen.fingerprint()["transformer_sha256"]


@pytest.mark.parametrize("missing", ["transformer", "vae", "scheduler"])
def test_incomplete_folders_are_refused(dit10, tmp_path, missing):
    folder = shutil.copytree(dit10, tmp_path / "broken")
    shutil.rmtree(folder / missing)
    with pytest.raises(InputError) as err:
        DiTGenerator(folder)
    message = err.value.format_message()
    assert str(folder) in message and f"no {missing}/" in message and "\n" not in message


def test_other_folders_are_refused(tiny_model, dit10, tmp_path):
    with pytest.raises(InputError, match="no transformer/, vae/"):
        DiTGenerator(tiny_model)
    folder = shutil.copytree(dit10, tmp_path / "noweights")
    (folder / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(InputError, match="cannot load transformer/") as err:
        DiTGenerator(folder)
    assert "\n" not in err.value.format_message()
