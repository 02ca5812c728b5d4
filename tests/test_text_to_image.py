"""The text-to-image backend (sd) on a tiny random Stable Diffusion pipeline: prompts as classes,
p @ E, guidance, seeds, and the flags and refusals of `ptgen synth` and `ptgen pseudo`."""

import json
import shutil
import sys

import numpy as np
import pytest
import torch

from generate.backends.text_to_image import TextToImageGenerator, imagenet_class_names
from generate.cli import main as ptgen
from ptcommon.cli import InputError
from ptcommon.shards import read_samples
from tiny_models import SD_NAMES as NAMES

STEPS = 2
# The conftest classifier's 5 source classes, named in a file as a user would.


pytestmark = pytest.mark.usefixtures("one_thread")


def _write(tmp_path, text, name="names.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _shards(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tar"))}


def test_models_says_backend_sd(sd, cli):
    info = json.loads(cli(ptgen, ["models", sd, "--json"]).output)
    assert info["backend"] == "sd" and info["image_size"] == 8 and info["channels"] == 3
    assert info["num_classes"] == 1000  # ImageNet's names unless --class-names says otherwise
    assert "backend sd" in cli(ptgen, ["models", sd]).output


def test_metadata_and_defaults(gen):
    assert (gen.num_classes, gen.image_size, gen.channels) == (5, 8, 3)
    assert gen.class_names == NAMES and gen.supports_guidance
    assert (gen.defaults.steps, gen.defaults.guidance) == (25, 2.0)
    assert gen._prompts.shape == (5, 32, 32) and gen._unconditional.shape == (1, 32, 32)
    assert getattr(gen, gen.network) is gen.unet  # what --compile compiles
    assert gen.fingerprint()["scheduler"]["class"] == "DPMSolverMultistepScheduler"


def test_imagenet_names_are_short_unique_and_in_index_order():
    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[:3] == ["tench", "goldfish", "great white shark"] and names[999] == "toilet tissue"
    assert (names[134], names[517], names[638], names[639]) == ("crane bird", "construction crane", "maillot",
                                                                  "tank suit")


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_one_hot_soft_label_equals_hard_label_bit_for_bit(gen, guidance):
    guided = guidance > 1
    ids, one_hot = torch.tensor([3, 0]), torch.eye(5)[[3, 0]]
    assert torch.equal(gen.prompt_embeddings(ids, guided), gen.prompt_embeddings(one_hot, guided))
    hard = gen.sample(ids, [11, 12], steps=STEPS, guidance=guidance)
    assert hard.dtype == np.uint8 and hard.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(hard, gen.sample(one_hot, [11, 12], steps=STEPS, guidance=guidance))


def test_a_soft_label_conditions_on_the_mixture_of_prompt_embeddings(gen):
    p = torch.tensor([[0.25, 0, 0.75, 0, 0]])
    torch.testing.assert_close(gen.prompt_embeddings(p, False)[0], 0.25 * gen._prompts[0] + 0.75 * gen._prompts[2])
    mixed = gen.sample(p, [5], steps=STEPS, guidance=2.0)[0]
    a, b = gen.sample(torch.tensor([0, 2]), [5, 5], steps=STEPS, guidance=2.0)
    assert not np.array_equal(mixed, a) and not np.array_equal(mixed, b) and not np.array_equal(a, b)


def test_guidance_off_runs_the_conditional_half_only(gen):
    calls = []

    def record(module, args, kwargs):
        calls.append((len(args[0]), len(kwargs["encoder_hidden_states"])))

    handle = gen.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        gen.sample(torch.tensor([1, 2, 3]), [1, 2, 3], steps=1, guidance=0.0)  # a one-step distilled model's call
        unguided, calls[:] = list(calls), []
        gen.sample(torch.tensor([1, 2, 3]), [1, 2, 3], steps=2, guidance=2.0)
    finally:
        handle.remove()
    assert unguided == [(3, 3)]
    assert calls == [(6, 6), (6, 6)]  # one call per step on [cond, uncond]


def test_guidance_uses_the_empty_prompt_and_changes_the_image(gen):
    context = gen.prompt_embeddings(torch.tensor([4, 1]), guided=True)
    assert torch.equal(context[2:], gen._unconditional.expand(2, -1, -1))
    plain = gen.sample(torch.tensor([2]), [3], steps=STEPS, guidance=1.0)
    assert not np.array_equal(plain, gen.sample(torch.tensor([2]), [3], steps=STEPS, guidance=4.0))


def test_each_image_depends_only_on_its_seed(gen):
    condition = torch.tensor([1, 2, 3])
    together = gen.sample(condition, [7, 8, 9], steps=STEPS, guidance=2.0)
    apart = [gen.sample(condition[i : i + 1], [s], steps=STEPS, guidance=2.0) for i, s in enumerate([7, 8, 9])]
    np.testing.assert_array_equal(together, np.concatenate(apart))
    assert not np.array_equal(gen.sample(condition[:1], [8], steps=STEPS, guidance=2.0), apart[0])


def test_image_size_and_fp16_vae(sd, names):
    big = TextToImageGenerator(sd, class_names=names, image_size=12)
    assert big.image_size == 12 and big.sample(torch.tensor([0]), [0], steps=1, guidance=2.0).shape == (1, 12, 12, 3)
    # SD's VAE overflows in fp16, so it stays fp32 (its config's force_upcast) while the UNet halves.
    half = TextToImageGenerator(sd, class_names=names, dtype=torch.float16)
    assert half.unet.dtype == torch.float16 and half.vae.dtype == torch.float32
    assert half._prompts.dtype == torch.float16


def test_fingerprint_names_template_size_and_weights(gen, sd, names, tmp_path):
    from safetensors.torch import load_file, save_file

    moved = shutil.copytree(sd, tmp_path / "elsewhere" / "sd")
    assert TextToImageGenerator(moved, class_names=names).fingerprint() == gen.fingerprint()
    json.dumps(gen.fingerprint())
    assert gen.fingerprint()["class_names"]["count"] == 5 and gen.fingerprint()["prompt"] == "a photo of a {}."
    renamed = _write(tmp_path, "\n".join(["carp", *NAMES[1:]]))
    others = [TextToImageGenerator(sd, class_names=renamed), TextToImageGenerator(sd, class_names=names, prompt="{}"),
              TextToImageGenerator(sd, class_names=names, image_size=12)]
    for key, other in zip(["class_names", "prompt", "image_size"], others):
        assert other.fingerprint()[key] != gen.fingerprint()[key]
    weights = moved / "text_encoder" / "model.safetensors"
    tensors = load_file(weights)
    # transformers 5 saves the key without the "text_model." prefix that 4.x writes.
    key = next(k for k in tensors if k.endswith("final_layer_norm.bias"))
    tensors[key] += 1
    save_file(tensors, weights)
    changed = TextToImageGenerator(moved, class_names=names)
    assert changed.fingerprint()["text_encoder_sha256"] != gen.fingerprint()["text_encoder_sha256"]
    assert not torch.equal(changed._prompts, gen._prompts)


def test_defaults_from_ptgen_json(sd, names, tmp_path):
    folder = shutil.copytree(sd, tmp_path / "turbo")
    (folder / "ptgen.json").write_text(json.dumps({"defaults": {"steps": 1, "guidance": 0}}))
    gen = TextToImageGenerator(folder, class_names=names)
    assert (gen.defaults.steps, gen.defaults.guidance) == (1, 0)


def test_synth_is_deterministic_resumable_and_independent_of_batch_size(sd, names, cli, tmp_path):
    out = tmp_path / "shards"
    synth = ["synth", "--model", sd, "--class-names", names, "--per-class", 2, "--steps", STEPS, "--shard-size", 4,
             "--quiet"]
    result = cli(ptgen, [*synth, "--out", out])
    assert result.exit_code == 0, result.output
    header = json.loads((out / "dataset.json").read_text())
    assert header["class_names"] == NAMES and header["image_size"] == 8 and header["channels"] == 3
    assert header["model_fingerprint"]["backend"] == "diffusers-sd" and header["guidance"] == 2.0
    first = _shards(out)
    assert len(first) == 3

    again = tmp_path / "again"
    assert cli(ptgen, [*synth, "--out", again]).exit_code == 0
    assert _shards(again) == first
    for batch in (1, 3):
        other = tmp_path / f"batch{batch}"
        assert cli(ptgen, [*synth, "--out", other, "--batch-size", batch]).exit_code == 0
        assert _shards(other) == first

    (out / "synth-000001.tar").unlink()
    resumed = cli(ptgen, [*synth, "--out", out])
    assert resumed.exit_code == 0 and "(2 already done)" in resumed.output
    assert _shards(out) == first


def test_synth_flags_reach_the_images_and_the_config(sd, names, cli, tmp_path):
    args = ["synth", "--model", sd, "--class-names", names, "--classes", 2, "--per-class", 1, "--quiet"]
    assert cli(ptgen, [*args, "--steps", 1, "--out", tmp_path / "plain"]).exit_code == 0
    result = cli(ptgen, [*args, "--steps", 1, "--guidance", 0, "--image-size", 12, "--prompt", "a {} underwater",
                         "--out", tmp_path / "big"])
    assert result.exit_code == 0, result.output
    plain, big = (json.loads((tmp_path / d / "dataset.json").read_text()) for d in ("plain", "big"))
    assert big["image_size"] == 12 and big["guidance"] == 0 and big["config_hash"] != plain["config_hash"]
    assert big["model_fingerprint"]["prompt"] == "a {} underwater"
    sample = next(read_samples(sorted((tmp_path / "big").glob("*.tar"))))
    assert sample.image.size == (12, 12)


def test_pseudo_conditions_on_the_classifier_soft_labels(sd, names, classifier, target, cli, tmp_path):
    out = tmp_path / "pseudo"
    args = ["pseudo", "--model", sd, "--class-names", names, "--classifier", classifier, "--target", target,
            "--per-target", 2, "--steps", STEPS, "--quiet"]
    result = cli(ptgen, [*args, "--out", out])
    assert result.exit_code == 0, result.output
    header = json.loads((out / "dataset.json").read_text())
    assert header["count"] == 6 and header["channels"] == 3 and not header["labeled"]
    tops = [sample.meta["top_classes"] for sample in read_samples(sorted(out.glob("*.tar")))]
    assert len(tops) == 6 and all(0 <= c < 5 for top in tops for c, _ in top)
    assert cli(ptgen, [*args, "--out", tmp_path / "again"]).exit_code == 0
    assert _shards(tmp_path / "again") == _shards(out)


def test_pseudo_with_a_timm_classifier_maps_onto_imagenet_names(sd, timm_weights, target, cli, tmp_path):
    out = tmp_path / "pseudo"
    result = cli(ptgen, ["pseudo", "--model", sd, "--classifier", "timm:test_resnet", "--classifier-weights",
                         timm_weights, "--target", target, "--per-target", 1, "--steps", 1, "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "cut to 32 tokens" in result.stderr  # ImageNet's longer prompts, on the tiny tokenizer's 32
    tops = [sample.meta["top_classes"] for sample in read_samples(sorted(out.glob("*.tar")))]
    assert len(tops) == 3 and all(0 <= c < 1000 for top in tops for c, _ in top)


@pytest.mark.parametrize("lines", [4, 6])
def test_pseudo_refuses_a_names_file_that_is_not_the_classifier_list(sd, classifier, target, cli, tmp_path, lines):
    path = _write(tmp_path, "\n".join((NAMES + ["mako"])[:lines]))
    result = cli(ptgen, ["pseudo", "--model", sd, "--class-names", path, "--classifier", classifier, "--target",
                         target, "--out", tmp_path / "out"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert f"--class-names {path}: the names file has {lines} lines, the classifier {classifier} 5 classes" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_long_prompt_is_cut_with_one_warning(sd, cli, tmp_path):
    path = _write(tmp_path, "carp\na very long name for a fish that goes on\ncod\n")
    out = tmp_path / "out"
    result = cli(ptgen, ["synth", "--model", sd, "--class-names", path, "--per-class", 1, "--steps", 1, "--out", out,
                         "--quiet"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "cut to 32 tokens" in warnings[0]
    assert "'a photo of a a very long name for a fish that goes on.'" in warnings[0]


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    ("\n\n", "the file is empty"),
    ("carp\n\ncod\n", "line 2 is blank"),
    ("carp\ncod\neel\ncod\n", "'cod' is on line 2 and again on line 4 (classes 1 and 3)"),
    ("Carp\ncod\ncarp\n", "'Carp' on line 1 and 'carp' on line 3 (classes 0 and 2) differ only in case"),
])
def test_bad_class_names_files_are_refused_in_one_line(sd, cli, tmp_path, content, expected):
    path = tmp_path / "names.txt"
    if content is not None:
        path.write_text(content)
    result = cli(ptgen, ["synth", "--model", sd, "--class-names", path, "--out", tmp_path / "out"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert f"--class-names {path}: {expected}" in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, expected", [
    (["--prompt", "a photo"], "--prompt 'a photo': no {} in it; put {} where the class name goes"),
    (["--prompt", "{} and {}"], "--prompt '{} and {}': {} appears 2 times"),
    (["--image-size", 10], "--image-size 10: the UNet of MODEL takes multiples of 4 px"),
])
def test_bad_prompts_and_sizes_are_refused_in_one_line(sd, names, cli, tmp_path, flags, expected):
    result = cli(ptgen, ["synth", "--model", sd, "--class-names", names, *flags, "--out", tmp_path / "out"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert expected.replace("MODEL", str(sd)) in result.stderr and not (tmp_path / "out").exists()
    if "--image-size" in flags:
        assert "the nearest are 8 and 12" in result.stderr


def test_text_to_image_flags_are_refused_by_other_backends(tiny_model, names, cli, tmp_path):
    for flags, expected in [
        (["--class-names", names], f"--class-names {names}: {tiny_model} is a unet model, which does not take "
                                   "--class-names; only these backends do: sd"),
        (["--prompt", "a {}"], "--prompt a {}: "),
        (["--image-size", 12], f"--image-size 12: {tiny_model} is a unet model, which samples at its native 8 px"),
    ]:
        result = cli(ptgen, ["synth", "--model", tiny_model, *flags, "--out", tmp_path / "out"])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and expected in result.stderr
    assert not (tmp_path / "out").exists()
    native = cli(ptgen, ["synth", "--model", tiny_model, "--image-size", 8, "--classes", 1, "--per-class", 1,
                         "--steps", 1, "--out", tmp_path / "native", "--quiet"])
    assert native.exit_code == 0, native.output


def test_incomplete_folders_and_a_missing_extra_are_refused(sd, tmp_path, monkeypatch):
    folder = shutil.copytree(sd, tmp_path / "broken")
    shutil.rmtree(folder / "tokenizer")
    with pytest.raises(InputError) as err:
        TextToImageGenerator(folder)
    message = err.value.format_message()
    assert f"--model {folder}: no tokenizer/" in message and "\n" not in message
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the sd extra were not installed
    with pytest.raises(InputError, match=r"needs transformers: pip install -e '\.\[sd\]'"):
        TextToImageGenerator(sd)
