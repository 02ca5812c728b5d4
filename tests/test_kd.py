"""pttrain kd: the knowledge-distillation baseline, end to end."""

import json

import torch

from train.cli import main as pttrain
from train.kd import Distillation, KDStudent
from ptcommon.runfolder import load_run


def test_kd_end_to_end_ships_the_student_without_its_auxiliary_head(cli, target, tmp_path):
    out = tmp_path / "kd"
    result = cli(pttrain, ["kd", "--data", target, "--teacher", "builtin:glyphs-1k", "--arch", "test_resnet",
                           "--epochs", 3, "--min-steps", 0, "--batch-size", 2, "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output + result.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss_kd"] >= 0 for r in rows if "loss_kd" in r)
    model, config = load_run(str(out))
    assert config.class_names == ["a", "b"] and model(torch.zeros(1, 1, 12, 12)).shape == (1, 2)


def test_distillation_loss_vanishes_when_the_aux_head_matches_the_teacher():
    import timm

    backbone = timm.create_model("test_resnet", num_classes=2, in_chans=1)
    student = KDStudent(backbone, teacher_classes=3).eval()
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        _, aux = student(x, with_aux=True)

    class Copy(torch.nn.Module):
        def forward(self, _):
            return aux

    loss, parts = Distillation(Copy(), alpha=1.0, temperature=4.0).loss(student, ((x, x), [0, 1, 0, 1]), torch.device("cpu"))
    assert abs(parts["loss_kd"]) < 1e-5
