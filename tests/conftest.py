import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tiny_models import save_tiny_unet

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """5 classes plus a null class, 8x8 grayscale, DPM-Solver."""
    return save_tiny_unet(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_model_no_null(tmp_path_factory) -> Path:
    return save_tiny_unet(tmp_path_factory.mktemp("tiny_nonull") / "model", null_class=False)


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
