"""Prompt sets (several --prompt, --prompts FILE, set:photo), --negative-prompt and --guidance LO:HI:
each sample's prompt and scale come from its own seed, so shards stay the same bytes at any batch
size and rank split; records name them; bad input is one line and writes nothing."""

import copy
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from generate.backends.text_to_image import PROMPT_SETS, TextToImageGenerator
from generate.cli import main as ptgen
from generate.generator import GuidanceRange, batch_guidance, denoise
from ptcommon.shards import read_samples
from test_text_to_image import STEPS, _shards
from tiny_models import save_tiny_dit

pytestmark = pytest.mark.usefixtures("one_thread")

TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]
OWN = {"tench": ["a tench in a net.", "a tench on the grass.", "a tench in a bucket."], "goldfish": ["a goldfish."]}


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.json"
    path.write_text(json.dumps(OWN))
    return path


@pytest.fixture(scope="module")
def sets(sd, names, prompts_file):
    """A generator with two templates, a file for two classes and a negative prompt."""
    return TextToImageGenerator(sd, class_names=names, prompt=TEMPLATES, prompts=prompts_file,
                                negative_prompt="blurry")


def _records(folder):
    return [sample.meta for sample in read_samples(sorted(folder.glob("*.tar")))]


def _synth(sd, names, prompts_file, out, *extra):
    return ["synth", "--model", sd, "--class-names", names, "--per-class", 3, "--steps", STEPS, "--shard-size", 4,
            "--prompt", TEMPLATES[0], "--prompt", TEMPLATES[1], "--prompts", prompts_file, "--negative-prompt",
            "blurry", "--guidance", "1:3", "--out", out, "--quiet", *extra]


def test_prompt_sets_and_a_range_give_the_same_shards_at_any_batch_size_and_split(sd, names, prompts_file, cli,
                                                                                   tmp_path, sets):
    out = tmp_path / "one"
    result = cli(ptgen, _synth(sd, names, prompts_file, out))
    assert result.exit_code == 0, result.output
    first = _shards(out)
    assert len(first) == 4
    for batch in (1, 5):
        other = tmp_path / f"batch{batch}"
        assert cli(ptgen, _synth(sd, names, prompts_file, other, "--batch-size", batch)).exit_code == 0
        assert _shards(other) == first
    split = tmp_path / "split"
    for rank in (1, 0):
        assert cli(ptgen, _synth(sd, names, prompts_file, split, "--rank", rank, "--world", 2)).exit_code == 0
    assert _shards(split) == first

    header = json.loads((out / "dataset.json").read_text())
    assert header["guidance"] == "1:3"
    fingerprint = header["model_fingerprint"]
    assert fingerprint["prompt"] == TEMPLATES and fingerprint["negative_prompt"] == "blurry"
    assert "class_prompts_sha256" in fingerprint
    records = _records(out)
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    assert [r["prompt"] for r in manifest] == [r["prompt"] for r in records]
    assert [r["guidance"] for r in manifest] == [r["guidance"] for r in records]
    for record in records:
        name, label = record["class_name"], record["label"]
        expected = OWN.get(name) or [t.replace("{}", name) for t in TEMPLATES]
        assert record["prompt"] in expected and record["prompt"] == sets.prompt(label, record["seed"])
        assert 1 <= record["guidance"] <= 3 and record["guidance"] == GuidanceRange(1, 3).scale(record["seed"])
    assert len({r["prompt"] for r in records if r["class_name"] == "tench"}) > 1  # the draw varies


def test_a_jsonl_file_is_the_same_prompts_as_its_json(sd, names, prompts_file, cli, tmp_path):
    lines = tmp_path / "prompts.jsonl"
    lines.write_text("\n".join(json.dumps({"class": k, "prompts": v}) for k, v in OWN.items()) + "\n\n")
    runs = {}
    for path in (prompts_file, lines):
        runs[path.suffix] = out = tmp_path / path.suffix[1:]
        result = cli(ptgen, _synth(sd, names, path, out, "--per-class", 1))
        assert result.exit_code == 0, result.output
    assert _shards(runs[".json"]) == _shards(runs[".jsonl"])


def test_each_sample_depends_only_on_its_seed_and_a_one_hot_label_is_its_class(sets):
    ids, seeds = torch.tensor([0, 0, 2, 4]), [11, 12, 13, 14]
    guidance = GuidanceRange(1, 3)
    together = sets.sample(ids, seeds, steps=STEPS, guidance=guidance)
    apart = [sets.sample(ids[i : i + 1], [s], steps=STEPS, guidance=guidance) for i, s in enumerate(seeds)]
    np.testing.assert_array_equal(together, np.concatenate(apart))
    one_hot = torch.eye(5)[ids]
    assert torch.equal(sets.prompt_embeddings(ids, True, seeds), sets.prompt_embeddings(one_hot, True, seeds))
    np.testing.assert_array_equal(together, sets.sample(one_hot, seeds, steps=STEPS, guidance=guidance))


def test_a_soft_label_mixes_each_class_s_picked_prompt(sets):
    p, seed = torch.tensor([[0.25, 0, 0.75, 0, 0]]), 5
    flat = sum(sets._class_prompts, [])
    row_0, row_2 = (sets._prompts[flat.index(sets.prompt(c, seed))] for c in (0, 2))
    torch.testing.assert_close(sets.prompt_embeddings(p, False, [seed])[0], 0.25 * row_0 + 0.75 * row_2)
    assert torch.equal(sets.prompt_embeddings(torch.tensor([0]), True, [seed])[1], sets._unconditional[0])


def test_the_default_stays_one_prompt_a_class_without_record_fields(gen):
    assert gen.record_fields(0, 7, 2.0) == {}
    assert gen.record_fields(0, 7, GuidanceRange(1, 3)) == {"guidance": GuidanceRange(1, 3).scale(7)}
    assert not {"negative_prompt", "class_prompts_sha256"} & set(gen.fingerprint())
    assert gen.fingerprint()["prompt"] == "a photo of a {}."


def test_set_photo_is_eight_templates(sd, names):
    photo = TextToImageGenerator(sd, class_names=names, prompt=["set:photo"])
    assert photo.fingerprint()["prompt"] == list(PROMPT_SETS["photo"]) and len(PROMPT_SETS["photo"]) == 8
    assert photo._prompts.shape[0] == 5 * 8
    assert photo.prompt(1, 3) in [t.replace("{}", "goldfish") for t in PROMPT_SETS["photo"]]


def test_denoise_applies_each_row_s_scale_and_leaves_rows_at_one_or_less_conditional():
    class OneStep:
        timesteps = [torch.tensor(0)]

        def scale_model_input(self, x, t):
            return x

        def step(self, out, t, x, generator):
            return type("Step", (), {"prev_sample": out})

    def predict(x_in, t):  # rows of the second half are unconditional
        half = len(x_in) // 2
        return torch.cat([x_in[:half] * 3 + 1, x_in[half:] * 0.5])

    x = torch.randn(4, 2, 3, 3)
    scales = torch.tensor([0.5, 1.0, 2.0, 3.5], dtype=torch.float64)
    out = denoise(OneStep(), x, [], predict, scales)
    cond, uncond = x * 3 + 1, x * 0.5
    assert torch.equal(out[:2], cond[:2])
    for row in (2, 3):
        torch.testing.assert_close(out[row], uncond[row] + float(scales[row]) * (cond[row] - uncond[row]))
        assert torch.equal(out[row : row + 1], denoise(OneStep(), x[row : row + 1], [], predict, scales[row : row + 1]))
    assert batch_guidance(GuidanceRange(0, 1), [1, 2]) == 1.0  # a range at or below 1 guides none
    assert batch_guidance(2.5, [1, 2]) == 2.5


def test_a_guidance_range_is_canonical_text_and_survives_copies():
    r = GuidanceRange(1.0, 3)
    assert r == "1:3" and json.dumps(r) == '"1:3"' and str(GuidanceRange(1.5, 4.25)) == "1.5:4.25"
    assert copy.deepcopy(r) == r and copy.deepcopy(r).high == 3.0
    scales = [r.scale(s) for s in range(200)]
    assert min(scales) >= 1 and max(scales) < 3 and max(scales) - min(scales) > 1.5


def test_the_builtin_unet_with_a_range_is_the_same_at_any_batch_size(tiny_model, cli, tmp_path):
    args = ["synth", "--model", tiny_model, "--per-class", 4, "--shard-size", 6, "--guidance", "1:3", "--quiet"]
    outs = [tmp_path / f"b{batch}" for batch in (3, 8)]
    for out, batch in zip(outs, (3, 8)):
        result = cli(ptgen, [*args, "--batch-size", batch, "--out", out])
        assert result.exit_code == 0, result.output
    assert _shards(outs[0]) == _shards(outs[1])
    records = _records(outs[0])
    assert all(1 <= r["guidance"] <= 3 and "prompt" not in r for r in records)
    plain = tmp_path / "plain"
    assert cli(ptgen, ["synth", "--model", tiny_model, "--per-class", 4, "--shard-size", 6, "--guidance", 2, "--quiet",
                       "--out", plain]).exit_code == 0
    plain_header, ranged_header = (json.loads((d / "dataset.json").read_text()) for d in (plain, outs[0]))
    assert plain_header["config_hash"] != ranged_header["config_hash"]
    assert "guidance" not in _records(plain)[0]


def test_a_sample_drawn_at_one_or_less_is_its_unguided_image(tiny_model):
    from generate.backends.unet import UNetGenerator

    unet, seeds, guidance = UNetGenerator(tiny_model), list(range(12)), GuidanceRange(0, 2)
    ids = torch.tensor(seeds) % 5
    ranged, plain = (unet.sample(ids, seeds, steps=3, guidance=g) for g in (guidance, 1.0))
    low = [i for i in seeds if guidance.scale(i) <= 1]
    assert 0 < len(low) < len(seeds)
    np.testing.assert_array_equal(ranged[low], plain[low])
    assert not np.array_equal(ranged, plain)


def test_dit_with_a_range_depends_only_on_each_seed(tmp_path):
    from generate.backends.dit import DiTGenerator

    dit = DiTGenerator(save_tiny_dit(tmp_path / "dit"))
    ids, seeds, guidance = torch.tensor([1, 2, 3]), [4, 5, 6], GuidanceRange(0.5, 4)
    together = dit.sample(ids, seeds, steps=2, guidance=guidance)
    apart = [dit.sample(ids[i : i + 1], [s], steps=2, guidance=guidance) for i, s in enumerate(seeds)]
    np.testing.assert_array_equal(together, np.concatenate(apart))


def test_pseudo_records_the_top_class_prompt_and_the_scale(sd, names, prompts_file, classifier, target, cli, tmp_path,
                                                           sets):
    out = tmp_path / "pseudo"
    result = cli(ptgen, ["pseudo", "--model", sd, "--class-names", names, "--classifier", classifier, "--target",
                         target, "--per-target", 2, "--steps", 1, "--prompt", TEMPLATES[0], "--prompt", TEMPLATES[1],
                         "--prompts", prompts_file, "--negative-prompt", "blurry", "--guidance", "1:3", "--out", out,
                         "--quiet"])
    assert result.exit_code == 0, result.output
    for record in _records(out):
        top = record["top_classes"][0][0]
        assert record["prompt"] == sets.prompt(top, record["seed"])
        assert record["guidance"] == GuidanceRange(1, 3).scale(record["seed"])


@pytest.mark.parametrize("content, suffix, expected", [
    ('{"tench": ["a"],\n "goldfish": ["b"]\n "cod": []}', ".json", "FILE: line 3: not valid JSON (Expecting ',' "
                                                                   "delimiter)"),
    ('{"class": "tench", "prompts": ["a"]}\n{"class": "goldfish", "prompts": ["b"}\n', ".jsonl",
     "FILE: line 2: not valid JSON"),
    ('{"class": "tench", "prompts": ["a"]}\n{"name": "goldfish", "prompts": ["b"]}\n', ".jsonl",
     'FILE: line 2: expected {"class": NAME, "prompts": [TEXT, ...]}'),
    ('{"class": "tench", "prompts": ["a"]}\n{"class": "tench", "prompts": ["b"]}\n', ".jsonl",
     "FILE: line 2: class 'tench' again (first on line 1)"),
    ('["a photo"]', ".json", "FILE: expected a JSON object of class name -> list of prompts"),
    ('{"tench": []}', ".json", "FILE: class 'tench': expected a non-empty list of prompts"),
    ('{"carp": ["a carp."], "cod": ["a cod."]}', ".json", "FILE: names none of the model's 5 classes (it names 2, "
                                                          "e.g. 'carp'"),
    ('', ".jsonl", "FILE: names none of the model's 5 classes (it names none"),
])
def test_bad_prompts_files_are_refused_in_one_line(sd, names, cli, tmp_path, content, suffix, expected):
    path = tmp_path / f"prompts{suffix}"
    path.write_text(content)
    result = cli(ptgen, ["synth", "--model", sd, "--class-names", names, "--prompts", path, "--out", tmp_path / "out"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert expected.replace("FILE", f"--prompts {path}") in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, expected", [
    (["--prompt", "a {}", "--prompt", "a photo"], "--prompt 'a photo': no {} in it"),
    (["--prompt", "set:nope"], "--prompt 'set:nope': no such set; the sets are set:photo"),
    (["--prompt", "set:photo", "--prompt", "a good photo of a {}."], "--prompt 'a good photo of a {}.': given twice"),
    (["--negative-prompt", "blurry", "--guidance", 1], "--negative-prompt 'blurry': guidance 1.0 is 1 or less"),
    (["--negative-prompt", "blurry", "--guidance", "0:1"], "--negative-prompt 'blurry': guidance 0:1 is 1 or less"),
    (["--guidance", "3:1"], "'3:1': LO 3 is above HI 1"),
    (["--guidance", "-1:2"], "Invalid value for '--guidance': -1.0 is not in the range x>=0"),
    (["--guidance", "-1"], "Invalid value for '--guidance': -1.0 is not in the range x>=0"),
    (["--guidance", "1:2:3"], "'1:2:3' is neither a scale nor a range LO:HI"),
    (["--guidance", ":3"], "':3' is neither a scale nor a range LO:HI"),
    (["--guidance", "a:b"], "Invalid value for '--guidance': 'a' is not a valid float"),
])
def test_bad_prompts_and_ranges_are_refused_in_one_line(sd, names, cli, tmp_path, flags, expected):
    result = cli(ptgen, ["synth", "--model", sd, "--class-names", names, *flags, "--out", tmp_path / "out"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr and not (tmp_path / "out").exists()


def test_text_flags_and_ranges_are_refused_where_the_model_takes_none(tiny_model, tiny_model_no_null, prompts_file,
                                                                      cli, tmp_path):
    for model, flags, expected in [
        (tiny_model, ["--negative-prompt", "blurry"], "--negative-prompt blurry: MODEL is a unet model, which does not "
                                                      "take --negative-prompt; only these backends do: sd"),
        (tiny_model, ["--prompts", prompts_file], f"--prompts {prompts_file}: MODEL is a unet model"),
        (tiny_model, ["--prompt", "a {}", "--prompt", "b {}"], "--prompt a {}, b {}: MODEL is a unet model"),
        (tiny_model_no_null, ["--guidance", "0:1"], "--guidance 0:1: MODEL has no null class, so it takes no guidance "
                                                    "range"),
        ("noise:5x8", ["--guidance", "1:2"], "--guidance 1:2: MODEL has no null class"),
    ]:
        result = cli(ptgen, ["synth", "--model", model, *flags, "--out", tmp_path / "out"])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
        assert expected.replace("MODEL", str(model)) in result.stderr
    assert not (tmp_path / "out").exists()
