"""PCS's soft labels: a timm classifier sees each target through timm's own evaluation transform,
and the labels are computed once per output folder, shared by the ranks, reused by a rerun, and
never mixed with another classifier's."""


import numpy as np
import pytest
import torch
from PIL import Image

from generate.cli import main as ptgen
from generate.models import load_generator
from generate.soft_labels import load_source, soft_labels
from ptcommon.shards import SOFT_LABELS_FILE
from tiny_models import save_tiny_dit


def pseudo(cli, model, classifier, target, out, *extra):
    return cli(ptgen, ["pseudo", "--model", model, "--classifier", classifier, "--target", target, "--out", out,
                       "--per-target", 2, "--shard-size", 2, "--steps", 2, "--quiet", *extra])


@pytest.fixture(scope="module")
def wide_target(tmp_path_factory):
    """Photographs that are not square, so that a squashing resize and a centre crop differ."""
    root = tmp_path_factory.mktemp("wide") / "data"
    gen = torch.Generator().manual_seed(0)
    for name, (w, h) in (("a/1.png", (90, 40)), ("b/2.jpg", (33, 71))):
        path = root / "train" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (h, w, 3), generator=gen, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(path)
    return root


def test_a_timm_classifier_sees_timms_evaluation_transform(timm_weights, wide_target, tmp_path):
    import timm
    from safetensors.torch import load_file
    from timm.data import create_transform, resolve_data_config

    dit = load_generator(str(save_tiny_dit(tmp_path / "dit", num_classes=1000)))
    paths = sorted((wide_target / "train").rglob("*.*"))
    # A low temperature magnifies what the input changes in a random-weight model's near-flat output.
    labels = soft_labels(paths, load_source("timm:test_resnet", dit, timm_weights), dit, 0.05, None)

    model = timm.create_model("test_resnet", pretrained=False)
    model.load_state_dict(load_file(str(timm_weights)))
    model.eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.inference_mode():
        logits = model(x)
    assert torch.allclose(labels.probs, torch.softmax(logits / 0.05, dim=1), atol=1e-5)
    assert torch.allclose(labels.confidence, torch.softmax(logits, dim=1).amax(1), atol=1e-7)
    # The plain resize (the squash a run folder's classifier gets) is another input: its labels
    # differ well beyond those tolerances, so the check above tells the two apart.
    data = resolve_data_config({}, model=model)
    size, mean, std = data["input_size"][-1], torch.tensor(data["mean"]), torch.tensor(data["std"])
    squashed = torch.stack([(torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize((size, size))).copy())
                             .permute(2, 0, 1) / 255 - mean[:, None, None]) / std[:, None, None] for p in paths])
    with torch.inference_mode():
        gap = (labels.probs - torch.softmax(model(squashed) / 0.05, dim=1)).abs().max()
    assert gap > 1e-3


def test_a_claim_left_by_a_dead_rank_passes_on(tiny_model, classifier, target, cli, tmp_path):
    import os
    import time

    from generate.soft_labels import _STALE_CLAIM_S
    from ptcommon.shards import temp_name

    out = tmp_path / "ps"
    out.mkdir()
    claim = out / temp_name(SOFT_LABELS_FILE + ".claim")
    claim.touch()
    old = time.time() - _STALE_CLAIM_S - 1
    os.utime(claim, (old, old))
    result = pseudo(cli, tiny_model, classifier, target, out)
    assert result.exit_code == 0, result.output
    assert (out / SOFT_LABELS_FILE).exists() and not claim.exists()


def test_ranks_and_reruns_read_the_soft_labels_computed_once(tiny_model, classifier, target, cli, tmp_path,
                                                             monkeypatch):
    import generate.soft_labels

    out = tmp_path / "ps"
    first = pseudo(cli, tiny_model, classifier, target, out, "--rank", 0, "--world", 2)
    assert first.exit_code == 0, first.output
    stored = (out / SOFT_LABELS_FILE).read_bytes()

    def computed_again(*args, **kwargs):
        raise AssertionError("the soft labels were computed a second time")

    monkeypatch.setattr(generate.soft_labels, "soft_labels", computed_again)
    for rank in (1, 0):  # the other rank, then a rerun of the first
        result = pseudo(cli, tiny_model, classifier, target, out, "--rank", rank, "--world", 2)
        assert result.exit_code == 0, result.output
    assert (out / SOFT_LABELS_FILE).read_bytes() == stored


def test_soft_labels_of_another_classifier_are_refused(tiny_model, classifier, target, cli, tmp_path):
    import shutil

    from ptcommon.runfolder import ModelConfig, create_model
    from train.models import save_run

    torch.manual_seed(1)
    config = ModelConfig("test_resnet", 5, [f"tiny class {i}" for i in range(5)], 8, 1, [0.5], [0.5], list(range(5)))
    other = tmp_path / "other-run"
    save_run(other, create_model(config), config)
    done = tmp_path / "ps"
    assert pseudo(cli, tiny_model, classifier, target, done).exit_code == 0
    labels_only = tmp_path / "labels-only"  # soft labels without the dataset they were computed for
    labels_only.mkdir()
    shutil.copy(done / SOFT_LABELS_FILE, labels_only)
    for out in (done, labels_only):
        before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        result = pseudo(cli, tiny_model, other, target, out)
        assert result.exit_code != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert f"its {SOFT_LABELS_FILE} was computed with another classifier" in result.stderr


def test_timms_default_weights_are_named_by_their_tag(monkeypatch):
    """An untagged timm name means whichever weights the installed timm makes its default: the
    digest (in the config hash and the soft labels' key) is that of the tagged name, so a timm
    that moves the default does not reuse the old weights' labels, and both spellings of the same
    weights agree. A tagged name keeps the digest it always had."""
    import timm.models

    from ptcommon.classifiers import classifier_digest

    assert classifier_digest("timm:resnet50.tv_in1k") == "timm:resnet50.tv_in1k:pretrained"
    default = timm.models.get_pretrained_cfg("resnet50").tag
    assert classifier_digest("timm:resnet50") == classifier_digest(f"timm:resnet50.{default}") == \
        f"timm:resnet50.{default}:pretrained"
    moved = timm.models.get_pretrained_cfg("resnet50.tv_in1k")
    monkeypatch.setattr(timm.models, "get_pretrained_cfg", lambda name: moved)
    assert classifier_digest("timm:resnet50") == "timm:resnet50.tv_in1k:pretrained"
