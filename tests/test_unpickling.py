"""A real malicious pickle (unpickling it creates a file) against every loader that takes a path
from the config, and the test suite's unpickling guard (tests/guard/pickle_guard.py) itself.

Each loader must refuse the file with an error, the file must not be created, and the guard must
not have been reached (tests/conftest.py fails a test during which it refused anything): weights
are read with safetensors or torch's weights-only unpickler, never with pickle."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pickle_guard
import pytest
import torch

from .conftest import write_random_backbone


class Payload:
    """Unpickled by a full unpickler, this calls open(marker, "w"): the file appears."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "pwned"


def write_payload(path, marker, fmt="torch"):
    """The payload as torch.save writes it (a zip with a pickle inside, what .bin/.pth files are)
    or as a plain pickle (torch's legacy format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torch":
        torch.save({"weight": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"weight": Payload(marker)}, protocol=2))
    return path


def _run(code: str, guard: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if not guard:
        env.pop("SURROGATESHAP_PICKLE_GUARD", None)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
def test_the_payload_is_real_and_the_guard_stops_it_in_subprocesses(tmp_path, marker, fmt):
    """Without the guard, a full unpickler runs the payload (so the tests below mean something);
    with it (the environment the tests give every process they start) it is refused."""
    path = write_payload(tmp_path / "evil.bin", marker, fmt)
    load = (
        f"import torch; torch.load({str(path)!r}, weights_only=False)"
        if fmt == "torch"
        else f"import pickle; pickle.load(open({str(path)!r}, 'rb'))"
    )
    guarded = _run(load, guard=True)
    assert guarded.returncode != 0 and "UnsafeUnpickling" in guarded.stderr, guarded.stderr
    assert not marker.exists()
    assert _run(load, guard=False).returncode == 0 and marker.exists()


def test_the_guard_cannot_be_dodged_by_spelling(tmp_path, marker):
    """Every spelling the old source scanner missed is refused at run time, and recorded."""
    torch_file = write_payload(tmp_path / "evil.pth", marker)
    pickle_file = write_payload(tmp_path / "evil.pkl", marker, "pickle")
    np.save(tmp_path / "evil.npy", np.array([Payload(marker)], dtype=object), allow_pickle=True)
    import pickle as pk

    from torch import load as imported_load
    from torch.serialization import load as serialization_load

    attempts = {
        "from torch import load": lambda: imported_load(torch_file, weights_only=False),
        "torch.serialization.load": lambda: serialization_load(torch_file, weights_only=False),
        "torch.load pickle_module": lambda: torch.load(torch_file, pickle_module=pickle),
        "import pickle as pk": lambda: pk.load(open(pickle_file, "rb")),
        "pk.Unpickler": lambda: pk.Unpickler(open(pickle_file, "rb")).load(),
        "pickle._Unpickler": lambda: pk._Unpickler(open(pickle_file, "rb")).load(),
        "np.load allow_pickle": lambda: np.load(tmp_path / "evil.npy", allow_pickle=True),
        "pd.read_pickle": lambda: pd.read_pickle(pickle_file),
    }
    for spelling, attempt in attempts.items():
        start = len(pickle_guard.REFUSED)
        with pytest.raises(pickle_guard.UnsafeUnpickling):
            attempt()
        assert len(pickle_guard.REFUSED) == start + 1, spelling
        del pickle_guard.REFUSED[start:]  # expected here; any other test fails on a refusal
    assert not marker.exists()
    # weights-only loads still work
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pth")
    assert torch.load(tmp_path / "ok.pth", weights_only=True)["w"].sum() == 2


def _refused(load, marker, *names):
    with pytest.raises(Exception) as error:
        load()
    assert not marker.exists(), "the payload ran"
    message = str(error.value)
    for name in names:
        assert name in message, (name, message)
    return message


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
def test_weight_file_loaders_refuse_the_payload(tmp_path, marker, fmt):
    """features.inception, features.aesthetic, features.lpips.backbone/.linear and the digits
    classifier, given a malicious file."""
    from surrogateshap.models.class_conditional import load_classifier
    from surrogateshap.proxy.extractors import load_linear_head
    from surrogateshap.proxy.inception import load_inception
    from surrogateshap.proxy.lpips import load_lpips
    from surrogateshap.workflow.io import read_state_dict

    evil = write_payload(tmp_path / "evil.pth", marker, fmt)
    good_backbone = write_random_backbone(tmp_path / "alexnet.pth")
    for load in (
        lambda: read_state_dict(evil, "weights"),
        lambda: load_linear_head(str(evil)),
        lambda: load_inception(evil),
        lambda: load_lpips(evil),
        lambda: load_lpips(good_backbone, evil),
    ):
        _refused(load, marker, "evil.pth")
    classifier = write_payload(tmp_path / "classifier.safetensors", marker, fmt)
    _refused(lambda: load_classifier(classifier), marker)


def _only_bin(folder, marker):
    """Replace every weights file of a saved model folder by the payload under the .bin name
    diffusers/transformers fall back to; returns how many were replaced."""
    replaced = 0
    for weights in list(folder.rglob("*.safetensors")):
        stem = weights.name.removesuffix(".safetensors")
        name = {
            "model": "pytorch_model",
            "diffusion_pytorch_model": "diffusion_pytorch_model",
            "pytorch_lora_weights": "pytorch_lora_weights",
        }[stem]
        weights.unlink()
        write_payload(weights.with_name(f"{name}.bin"), marker)
        replaced += 1
    return replaced


def test_model_folders_with_only_bin_files_refuse_the_payload(tmp_path, marker):
    """model.path (the workflow's own UNet folder, a text-to-image pipeline), model.lora and
    features.clip / features.reward folders that carry only malicious .bin files."""
    from surrogateshap.models import t2i, tiny
    from surrogateshap.models.class_conditional import build_unet, load_diffusion
    from surrogateshap.proxy.extractors import load_clip

    unet = tmp_path / "unet_model"
    build_unet(2, 8, [8]).save_pretrained(unet / "unet")
    (unet / "conditioning.json").write_text(
        json.dumps({"class_names": ["a", "b"], "conditioning": "contributor", "image_size": 8})
    )
    assert _only_bin(unet, marker) == 1
    _refused(lambda: load_diffusion(str(unet)), marker, "safetensors")

    tiny.make_tiny_pipeline("sd", tmp_path / "pipe", resolution=16, lora_dir=tmp_path / "lora")
    gen = {"steps": 1, "guidance_scale": 1.0, "batch_size": 1, "resolution": 16}
    spec = {"type": "stable_diffusion", "path": str(tmp_path / "pipe")}
    assert _only_bin(tmp_path / "lora", marker) == 1
    _refused(
        lambda: t2i.load(
            spec | {"lora": str(tmp_path / "lora")}, gen, torch.device("cpu"), torch.float32
        ),
        marker,
        "model.lora",
        "pytorch_lora_weights.bin",
    )
    assert _only_bin(tmp_path / "pipe", marker) >= 3  # unet, vae, text encoder
    _refused(lambda: t2i.load(spec, gen, torch.device("cpu"), torch.float32), marker, "model.path")

    tiny.make_tiny_clip(tmp_path / "clip")
    assert _only_bin(tmp_path / "clip", marker) == 1
    _refused(lambda: load_clip(str(tmp_path / "clip")), marker, "CLIP model folder", "clip")
