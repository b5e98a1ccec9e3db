"""Training of the class-conditional model where the user's hardware is: checkpoints that resume
to the same weights after a kill, the device setting, and CUDA where present (`gpu` marker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from surrogateshap.models import class_conditional as models

CFG = {
    "block_out_channels": [8, 16],
    "train_timesteps": 50,
    "steps": 12,
    "batch_size": 8,
    "lr": 2e-3,
    "ema_decay": 0.9,
    "label_dropout": 0.1,
    "checkpoint_every": 4,
}


def _data(n: int = 24, size: int = 8):
    rng = np.random.default_rng(0)
    return rng.random((n, size, size)).astype(np.float32), rng.integers(0, 3, n)


def _train(checkpoint=None, on_batch=None, cfg=CFG, device=None):
    torch.set_num_threads(1)
    images, classes = _data()
    return models.train_diffusion(
        images,
        classes,
        ["a", "b", "c"],
        "contributor",
        cfg,
        seed=3,
        checkpoint=checkpoint,
        on_batch=on_batch,
        device=device,
    )


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.unet.state_dict().items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class Interrupted(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    """Stopped after step 7 (last checkpoint at 4), then run again: every weight of the result
    (the EMA copy) equals an uninterrupted run's, bit for bit."""
    uninterrupted = _weights(_train())
    checkpoint = tmp_path / "ckpt.pt"
    seen = []

    def stop_at_step_7(indices):
        seen.append(indices)
        if len(seen) == 8:
            raise Interrupted

    with pytest.raises(Interrupted):
        _train(checkpoint, stop_at_step_7)
    state = torch.load(checkpoint, weights_only=True)
    assert state["step"] == 4
    batches = []
    resumed = _weights(_train(checkpoint, batches.append))
    assert len(batches) == CFG["steps"] - 4  # only the steps after the checkpoint
    np.testing.assert_array_equal(batches[0], seen[4])  # the same batch the first run drew there
    _assert_same(uninterrupted, resumed)


def test_a_killed_process_resumes_to_the_same_weights(tmp_path):
    """A real kill (SIGKILL, as a scheduler's time limit or a lost node gives) of a training
    process half-way, then a fresh process: the same final weights as one uninterrupted run."""
    cfg = dict(CFG, steps=60, checkpoint_every=5)
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            import numpy as np, torch
            from safetensors.torch import save_file
            from surrogateshap.models import class_conditional as models
            torch.set_num_threads(1)
            rng = np.random.default_rng(0)
            images = rng.random((24, 8, 8)).astype(np.float32)
            classes = rng.integers(0, 3, 24)
            slow = sys.argv[2] == "slow"
            def pace(indices):
                if slow:
                    time.sleep(0.05)  # time for the test to kill it half-way
            model = models.train_diffusion(
                images, classes, ["a", "b", "c"], "contributor", {cfg!r}, seed=3,
                checkpoint=sys.argv[1], on_batch=pace,
            )
            save_file(model.unet.state_dict(), sys.argv[3])
            """
        )
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    checkpoint = tmp_path / "ckpt.pt"
    first = subprocess.Popen(
        [sys.executable, str(script), str(checkpoint), "slow", str(tmp_path / "never.safetensors")],
        env=env,
    )
    deadline = time.time() + 120
    step = 0
    while time.time() < deadline and first.poll() is None:
        if checkpoint.is_file():
            try:
                step = torch.load(checkpoint, weights_only=True)["step"]
            except (RuntimeError, EOFError):  # caught mid-rename: never, but do not fail on it
                step = 0
            if step >= 15:
                break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert 15 <= step < cfg["steps"], f"killed at step {step}"
    assert not (tmp_path / "never.safetensors").exists()
    for out, ckpt in (("resumed", checkpoint), ("whole", tmp_path / "fresh.pt")):
        subprocess.run(
            [sys.executable, str(script), str(ckpt), "fast", str(tmp_path / f"{out}.safetensors")],
            env=env,
            check=True,
            timeout=300,
        )
    from safetensors.torch import load_file

    _assert_same(
        load_file(tmp_path / "whole.safetensors"), load_file(tmp_path / "resumed.safetensors")
    )


def test_without_a_checkpoint_file_nothing_changes(tmp_path):
    """Checkpointing saves state and changes no number: a run that saves checkpoints gives the
    weights of one that does not."""
    _assert_same(_weights(_train()), _weights(_train(tmp_path / "ckpt.pt")))
    assert (tmp_path / "ckpt.pt").is_file()


def test_mixed_precision_is_for_gpus_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert models.autocast_dtype(None, cpu) is None
    assert models.autocast_dtype("bf16", cpu) is None
    assert models.autocast_dtype("fp32", cuda) is None
    assert models.autocast_dtype("fp16", cuda) == torch.float16


def test_the_device_setting_is_named_when_cuda_is_missing():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="model.train.device"):
        models.resolve_device("cuda", "model.train.device")


@pytest.mark.gpu
def test_training_uses_cuda_with_mixed_precision(tmp_path):
    """On a GPU: train_model's device auto is CUDA, training runs under autocast, the returned
    model is on the CPU, and a resumed run there matches an uninterrupted one."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    device = models.resolve_device("auto", "model.train.device")
    assert device.type == "cuda"
    whole = _weights(_train(device=device))
    checkpoint = tmp_path / "ckpt.pt"
    seen = []

    def stop(indices):
        seen.append(indices)
        if len(seen) == 6:
            raise Interrupted

    with pytest.raises(Interrupted):
        _train(checkpoint, stop, device=device)
    resumed = _train(checkpoint, device=device)
    assert next(resumed.unet.parameters()).device.type == "cpu"
    # cuDNN's convolution gradients are not bit-reproducible: close, not equal, on a GPU
    for key, value in _weights(resumed).items():
        torch.testing.assert_close(value, whole[key], rtol=1e-3, atol=1e-3)
