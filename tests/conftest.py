import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ptcommon.runfolder import ModelConfig, create_model
from tiny_models import SD_NAMES, save_tiny_sd, save_tiny_unet
from train.models import save_run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """5 classes plus a null class, 8x8 grayscale, DPM-Solver."""
    return save_tiny_unet(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_model_no_null(tmp_path_factory) -> Path:
    return save_tiny_unet(tmp_path_factory.mktemp("tiny_nonull") / "model", null_class=False)


@pytest.fixture(scope="session")
def target(tmp_path_factory):
    """A 2-class ImageFolder: 3 training images (the conditions) and a test image (never used)."""
    root = tmp_path_factory.mktemp("target") / "data"
    for split, names in (("train", ["a/1.png", "a/2.png", "b/3.png"]), ("test", ["a/9.png"])):
        for i, name in enumerate(names):
            path = root / split / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", (12, 12), 40 * (i + 1)).save(path)
    return root


@pytest.fixture(scope="session")
def sd(tmp_path_factory):
    """A tiny random-weight Stable Diffusion folder (tiny_models.save_tiny_sd)."""
    return save_tiny_sd(tmp_path_factory.mktemp("sd") / "model")


@pytest.fixture(scope="session")
def names(tmp_path_factory):
    """A class-names file of SD_NAMES, for the text-to-image tests."""
    path = tmp_path_factory.mktemp("names") / "names.txt"
    path.write_text("\n".join(SD_NAMES) + "\n\n")  # blank trailing lines are no classes
    return path


@pytest.fixture(scope="session")
def gen(sd, names):
    from generate.backends.text_to_image import TextToImageGenerator

    return TextToImageGenerator(sd, class_names=names)


@pytest.fixture(scope="session")
def validated(target, tmp_path_factory):
    """The target with a val/ part (its one test image), so that each epoch of a run on it also ends
    in the validation (and, on several processes, its collective)."""
    root = tmp_path_factory.mktemp("validated") / "data"
    shutil.copytree(target, root)
    shutil.copytree(root / "test", root / "val")
    return root


@pytest.fixture(scope="session")
def classifier(tmp_path_factory):
    """A tiny source classifier over the tiny generator's 5 classes (source ids 0..4)."""
    torch.manual_seed(0)
    config = ModelConfig("test_resnet", 5, [f"tiny class {i}" for i in range(5)], 8, 1, [0.5], [0.5], list(range(5)))
    folder = tmp_path_factory.mktemp("cls") / "run"
    save_run(folder, create_model(config), config)
    return folder


@pytest.fixture(scope="session")
def timm_weights(tmp_path_factory):
    """ImageNet-shaped timm weights saved locally, as a user without hub access would bring them."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("timm") / "test_resnet.safetensors"
    save_file(timm.create_model("test_resnet").state_dict(), str(path))
    return path


@pytest.fixture()
def cli():
    """Invoke a click command in-process; returns the click Result (stdout and stderr apart)."""
    runner = CliRunner()

    def invoke(command, args):
        return runner.invoke(command, [str(a) for a in args], catch_exceptions=False)

    return invoke


def run_module(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m ...` in a child process, as a user's shell would."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, **kwargs)


def synth_killed_after(args: list[str], out: Path, shards: int = 2, timeout: float = 120) -> int:
    """`ptgen synth ARGS` (writing into OUT) killed by SIGKILL once SHARDS shards have landed, or at
    TIMEOUT; how many had landed."""
    proc = subprocess.Popen([sys.executable, "-m", "generate", "synth", *map(str, args)], cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while len(list(out.glob("synth-*.tar"))) < shards and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return len(list(out.glob("synth-*.tar")))


@pytest.fixture(scope="session")
def labeled_shards(tiny_model, tmp_path_factory) -> Path:
    """21 labeled samples of source classes 1, 3 and 4 (7 each) in 5 shards of 5."""
    from generate.cli import main as ptgen

    out = tmp_path_factory.mktemp("labeled") / "shards"
    args = ["synth", "--model", tiny_model, "--out", out, "--class-ids", "1,3,4", "--per-class", 7,
            "--shard-size", 5, "--quiet"]
    assert CliRunner().invoke(ptgen, [str(a) for a in args]).exit_code == 0
    return out


@pytest.fixture(scope="session")
def pseudo_shards(tiny_model, classifier, target, tmp_path_factory) -> Path:
    """12 unlabeled pseudo samples: 4 for each of the target's 3 training images."""
    from generate.cli import main as ptgen

    out = tmp_path_factory.mktemp("pseudo") / "shards"
    args = ["pseudo", "--model", tiny_model, "--classifier", classifier, "--target", target, "--out", out,
            "--per-target", 4, "--quiet"]
    assert CliRunner().invoke(ptgen, [str(a) for a in args]).exit_code == 0
    return out


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-model tests: tensors this small gain nothing from
    intra-op threads, and on busy shared cores their synchronisation made such a file ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
