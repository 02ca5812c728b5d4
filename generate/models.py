"""Resolving a generator SPEC: `builtin:NAME`, a diffusers model folder, a hub id, or `noise:...`."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import torch

from ptcommon import builtin
from ptcommon.cli import InputError
from ptcommon.device import choose_device

from .generator import Generator

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Backends whose published pipelines sample in fp16 (diffusers' DiT and Stable Diffusion examples):
# on a GPU without bf16 they take fp16; the rest (a GAN, the built-in model) stay at fp32 there.
_FP16_BACKENDS = ("dit", "sd")


def describe_folder(folder: Path, flag: str = "--model") -> dict:
    """Which backend a model folder is for and what it holds, from its config files (no weights read)."""
    from .backends import backend_for

    backend = backend_for(folder, flag)
    return {"path": str(folder), "backend": backend.name, **backend.describe(folder)}


def builtin_info(name: str) -> dict:
    """A built-in generator: its SPEC, whether this installation has it, and what its folder holds."""
    path = builtin.folder(name, "generator")
    described = describe_folder(path) if path.is_dir() else {"path": str(path)}
    return {"name": builtin.PREFIX + name, "installed": path.is_dir(), **described}


def list_builtins() -> list[dict]:
    return [builtin_info(name) for name in builtin.names()]


def _model_folder(spec: str) -> Path:
    if builtin.is_builtin(spec):
        return builtin.resolve(spec, "generator", "--model")
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise InputError(f"--model {spec}: is a file; expected a diffusers model folder")
    if _HUB_ID.match(spec) and not spec.startswith((".", "/")):
        return _download(spec)
    raise InputError(
        f"--model {spec}: no such folder; expected {builtin.DEFAULT_SPEC}, a diffusers model folder "
        "or a hub id such as facebook/DiT-XL-2-256 (noise:CLASSESxSIZE for a dry run without a model)"
    )


def _backend(spec: str) -> tuple[type[Generator], Path | str]:
    """The backend a SPEC names and what it loads: a model folder, or for `noise:...` the SPEC itself."""
    from .backends import backend_for
    from .backends.noise import NoiseGenerator, is_noise

    if is_noise(spec):
        return NoiseGenerator, spec
    folder = _model_folder(spec)
    return backend_for(folder), folder


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id))
    except Exception as err:  # the hub client raises many types: offline, missing repo, auth
        raise InputError(
            f"--model {repo_id}: could not fetch it from the model hub ({type(err).__name__}); "
            "without network access pass a local diffusers model folder"
        ) from None


def load_generator(spec: str, device: str = "cpu", dtype: str = "fp32", options: dict | None = None) -> Generator:
    """Load the generator a SPEC names, on `device` in `dtype` (fp32, fp16 or bf16).

    `options` are flags that only some backends take (image_size, class_names, prompt, ...; None
    values count as not given), passed to the backend's constructor as keyword arguments of the
    same names. A backend whose constructor lacks one refuses it in one line, except image_size,
    which every generator has and so accepts at its native value.
    """
    from .backends import BACKENDS

    given = {name: value for name, value in (options or {}).items() if value is not None}
    device = resolve_device(device)
    if device == "cpu" and dtype == "fp16":
        # CPUs run fp16 by emulation, slower than fp32, and its range overflows in attention.
        raise InputError("--dtype fp16: half precision is for CUDA; on CPU use --dtype bf16 (fast where the "
                         "processor has AVX-512 BF16 or AMX) or fp32")
    backend, folder = _backend(spec)
    for name, value in list(given.items()):
        if _takes(backend, name):
            continue
        flag = "--" + name.replace("_", "-")
        if name == "image_size":
            native = backend.describe(folder)["image_size"]
            if value != native:
                raise InputError(f"{flag} {value}: {spec} is a {backend.name} model, which samples at its native "
                                 f"{native} px only; pass {native} or leave {flag} out")
            del given[name]
            continue
        takers = ", ".join(b.name for b in BACKENDS if _takes(b, name))
        shown = ", ".join(value) if isinstance(value, tuple) else value  # a flag given several times
        raise InputError(f"{flag} {shown}: {spec} is a {backend.name} model, which does not take {flag}; "
                         f"only these backends do: {takers} (`ptgen models` lists them)")
    return backend(folder, device=device, dtype=DTYPES[dtype], **given)


def choose_dtype(spec: str, device: str, dtype: str) -> tuple[str, str]:
    """--dtype, with `auto` resolved for the device and the model's backend; and why, for the start line.

    On CUDA, bf16 where the GPU has it (fp32's range, half its bytes), else fp16 for the backends
    published in fp16; fp32 on CPUs, where bf16 pays only with AVX-512 BF16 or AMX (docs/results.md)."""
    if dtype != "auto":
        return dtype, "as given"
    if not resolve_device(device).startswith("cuda"):
        return "fp32", "auto: fp32 on CPU"
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16", "auto: bf16, which this GPU supports"
    backend, _ = _backend(spec)
    if backend.name in _FP16_BACKENDS:
        return "fp16", f"auto: this GPU lacks bf16, and {backend.name} pipelines are published in fp16"
    return "fp32", f"auto: this GPU lacks bf16, and {backend.name} models run in fp32"


def takes_option(spec: str, option: str) -> bool:
    """Whether the model SPEC names takes `option` (one of `load_generator`'s options)."""
    return _takes(_backend(spec)[0], option)


def _takes(backend: type[Generator], option: str) -> bool:
    return option in inspect.signature(backend.__init__).parameters


def resolve_device(device: str) -> str:
    """--device as a torch device string: cpu, or this process's GPU (ptcommon.device)."""
    chosen = choose_device(device)
    if chosen.type == "cuda":
        # fp32 matmuls and convolutions on tensor cores (TF32): several times faster, and the
        # samples' bytes are not equal across devices in any case.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return str(chosen)

def describe_models(folder: Path | None, as_json: bool) -> list[str]:
    """`ptgen models`' lines: the built-in models and the backends, or what FOLDER holds."""
    import json

    from .backends import BACKENDS

    if folder is not None:
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder")
        info = describe_folder(folder, "FOLDER")
        return [json.dumps(info, indent=1) if as_json else
                f"{folder}: backend {info['backend']}, {info['num_classes']} classes, {info['image_size']}px, "
                f"{info['channels']} channels"]
    infos = list_builtins()
    if as_json:
        return [json.dumps(infos, indent=1)]
    lines = [f"{i['name']}  {i['backend']}  {i['num_classes']} classes  {i['image_size']}px  {i['path']}"
             if i["installed"] else f"{i['name']}  (not installed in this build; expected at {i['path']})"
             for i in infos]
    return lines + ["backends (chosen from a --model folder's own files):",
                    *(f"  {backend.name:6s} {backend.layout}" for backend in BACKENDS)]
