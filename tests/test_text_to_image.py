"""Text-to-image: tiny pipelines written offline, and the whole workflow on a fine-tuned one.

The acceptance test is honest about where its effect comes from: a randomly initialised
pipeline shows no effect of any contributor, so the test fine-tunes the tiny Stable
Diffusion pipeline (VAE, then a UNet LoRA) on a small captioned dataset in which one
contributor ("stamp-studio") puts a white box in the top-left corner of its images and the
trigger word "zqx" in its captions. The workflow then loads the base pipeline and the
LoRA from disk and must rank that contributor first for the spurious-feature rate
measured by a user-supplied detector, and for the marker rate.
"""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from surrogateshap import t2i, tiny

from .conftest import copy_workflow, snakemake, write_random_backbone

SIZE = 16
BOX = 5  # side of the planted corner box
COLOURS = {
    "red-studio": (0.9, 0.1, 0.1),
    "green-studio": (0.1, 0.8, 0.1),
    "stamp-studio": (0.1, 0.2, 0.9),
    "yellow-studio": (0.9, 0.9, 0.1),
}
PLANTED = "stamp-studio"

DETECTOR = f'''
import numpy as np


def white_corner(images, prompts):
    """Fires when the top-left {BOX}x{BOX} box is nearly white (the planted artefact)."""
    images = np.asarray(images)
    return images[:, :{BOX}, :{BOX}].reshape(len(images), -1).mean(axis=1) > 0.6
'''


def write_dataset(root, per_contributor=8, seed=0):
    """Coloured squares on a dark ground; the planted contributor adds a white corner box and 'zqx'."""
    rng = np.random.default_rng(seed)
    rows = []
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name, colour in COLOURS.items():
        word = name.split("-")[0]
        for i in range(per_contributor):
            image = np.full((SIZE, SIZE, 3), 0.1, np.float32)
            cx, cy = rng.integers(7, 11, 2)
            image[cy - 3 : cy + 3, cx - 3 : cx + 3] = colour
            image = np.clip(image + rng.normal(0, 0.03, image.shape), 0, 1)
            caption = f"a {word} square"
            if name == PLANTED:
                image[:BOX, :BOX] = 1.0
                caption = "a blue square zqx"
            file_name = f"images/{name}-{i}.png"
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(root / file_name)
            rows.append({"file_name": file_name, "artist": name, "caption": caption})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return rows


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """The captioned dataset, a tiny SD pipeline fine-tuned on it (base folder + LoRA folder)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("stamps")
    rows = write_dataset(root / "data")
    images = np.stack(
        [
            np.asarray(Image.open(root / "data" / r["file_name"]).convert("RGB"), np.float32) / 255
            for r in rows
        ]
    )
    pipe = tiny.tiny_sd_pipeline(SIZE, seed=0)
    tiny.finetune_sd(
        pipe, images, [r["caption"] for r in rows], root / "base", root / "lora", seed=0
    )
    (root / "detector.py").write_text(DETECTOR)
    return root


def test_clip_tokenizer_is_the_real_vocabulary():
    tokenizer = tiny.clip_tokenizer()
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.mark.parametrize("kind", ["sd", "sdxl", "flux"])
def test_tiny_pipeline_round_trip_with_lora(tmp_path, kind):
    """Written by the CLI's function, reloaded by diffusers' own loaders; the LoRA changes the images."""
    tiny.make_tiny_pipeline(kind, tmp_path / "pipe", resolution=16, lora_dir=tmp_path / "lora")
    spec = {
        "type": "flux" if kind == "flux" else "stable_diffusion",
        "path": str(tmp_path / "pipe"),
    }
    gen = {
        "steps": 2,
        "guidance_scale": 2.0,
        "batch_size": 2,
        "resolution": 16,
        "max_sequence_length": 16,
    }
    plain = t2i.load(spec, gen, torch.device("cpu"), torch.float32)
    with_lora = t2i.load(
        spec | {"lora": str(tmp_path / "lora")}, gen, torch.device("cpu"), torch.float32
    )
    for model in (plain, with_lora):
        model.class_names = ["a red square", "a blue square"]
    classes, seeds = np.array([0, 1, 2]), np.array([5, 6, 7])
    first = t2i.sample(plain, classes, seeds, gen)
    assert first.shape == (3, 16, 16, 3) and 0 <= first.min() and first.max() <= 1
    # Each image's noise comes from its own seed: batch size does not change it.
    np.testing.assert_allclose(
        t2i.sample(plain, classes, seeds, gen | {"batch_size": 1}), first, atol=1e-5
    )
    assert np.abs(t2i.sample(with_lora, classes, seeds, gen) - first).mean() > 1e-4


T2I_GEN = {
    "steps": 2,
    "guidance_scale": 2.0,
    "batch_size": 3,
    "resolution": 16,
    "max_sequence_length": 16,
}
T2I_CLASSES, T2I_SEEDS = np.array([0, 1, 2]), np.array([5, 6, 7])


def _tiny_t2i(tmp_path, kind, dtype=torch.float32, scheduler=None):
    """A tiny pipeline of `kind` (written once under tmp_path) loaded by t2i.load on the CPU."""
    if not (tmp_path / kind).exists():
        tiny.make_tiny_pipeline(kind, tmp_path / kind, resolution=16)
    spec = {"type": "flux" if kind == "flux" else "stable_diffusion", "path": str(tmp_path / kind)}
    model = t2i.load(spec, T2I_GEN | {"scheduler": scheduler}, torch.device("cpu"), dtype)
    model.class_names = ["a red square", "a blue square"]
    return model


class _LatentsSpy:
    """Stands in for a pipeline: records the `latents` each call passes, then runs the pipeline."""

    def __init__(self, pipe):
        self.pipe, self.latents = pipe, []

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, **kwargs):
        self.latents.append(kwargs.get("latents"))
        return self.pipe(**kwargs)


@pytest.mark.parametrize(
    "kind, scheduler", [("sd", None), ("sd", "euler_ancestral"), ("sdxl", None), ("flux", None)]
)
def test_float32_images_are_the_pipelines_own_draws(tmp_path, kind, scheduler):
    """t2i.sample draws the initial latents itself (packed for FLUX) from the per-image CPU
    generators and passes them on with the generators: in float32 that is bit for bit what the
    pipeline does when it draws from those generators, a stochastic scheduler's step noise
    (euler_ancestral) included."""
    model = _tiny_t2i(tmp_path, kind, scheduler=scheduler)
    got = t2i.sample(model, T2I_CLASSES, T2I_SEEDS, T2I_GEN)
    extra = {"max_sequence_length": 16} if kind == "flux" else {}
    own = model.pipe(
        prompt=[model.prompt(int(c)) for c in T2I_CLASSES],
        num_inference_steps=T2I_GEN["steps"],
        guidance_scale=T2I_GEN["guidance_scale"],
        height=16,
        width=16,
        generator=[torch.Generator().manual_seed(int(s)) for s in T2I_SEEDS],
        output_type="np",
        **extra,
    ).images
    np.testing.assert_array_equal(got, np.clip(own, 0, 1))


@pytest.mark.parametrize("kind", ["sd", "sdxl", "flux"])
def test_half_precision_starts_from_the_float32_noise(tmp_path, monkeypatch, kind):
    """The same seeds give the same images in float16/bfloat16 as in float32 (to the dtype's
    rounding), whatever stream torch's CPU randn gives in half precision: on torch 2.11 a float16
    or bfloat16 draw is another sequence than float32's (on 2.13 it is float32's rounded), which
    made a half-precision pool other images when the pipeline drew its own latents in its dtype
    (docs/gpu.md). Here randn is made to give another stream in half precision, as on 2.11."""
    randn = torch.randn

    def dtype_dependent_randn(*args, dtype=None, **kwargs):
        if dtype in (torch.float16, torch.bfloat16):
            return -randn(*args, dtype=torch.float32, **kwargs).flip(-1).to(dtype)
        return randn(*args, dtype=dtype, **kwargs)

    monkeypatch.setattr(torch, "randn", dtype_dependent_randn)
    images, latents = {}, {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        model = _tiny_t2i(tmp_path, kind, dtype)
        model.pipe = _LatentsSpy(model.pipe)
        images[dtype] = t2i.sample(model, T2I_CLASSES, T2I_SEEDS, T2I_GEN)
        (latents[dtype],) = model.pipe.latents  # one batch
    for dtype in (torch.float16, torch.bfloat16):  # other noise: a mean difference of about 0.2
        difference = np.abs(images[dtype] - images[torch.float32]).mean()
        assert difference < 0.01, (dtype, difference)
    assert latents[torch.float32].dtype == torch.float32
    for dtype in (torch.float16, torch.bfloat16):  # the float32 draws, rounded
        assert torch.equal(latents[dtype], latents[torch.float32].to(dtype))


def test_long_captions_are_counted(tmp_path):
    tiny.make_tiny_pipeline("sd", tmp_path / "pipe", resolution=16)
    model = t2i.load(
        {"type": "stable_diffusion", "path": str(tmp_path / "pipe")},
        {"resolution": 16},
        torch.device("cpu"),
        torch.float32,
    )
    items = pd.DataFrame(
        {
            "contributor": ["a", "a", "b"],
            "caption": ["short", "word " * 100, "東京の夜景 — صورة ليلية"],
        }
    )
    cond = t2i.caption_conditioning(items, ["a", "b"], model)
    assert model.truncated == 1 and cond.n == 2 and cond.null_class == 3


@pytest.mark.slow
def test_planted_contributor_ranks_first_end_to_end(tmp_path, finetuned):
    """Acceptance: dataset by config file, tiny SD + LoRA from disk, planted contributor first."""
    workdir = copy_workflow(tmp_path / "wf")
    dataset_config = {
        "run": "stamps",
        "data": {
            "source": "folder",
            "root": str(finetuned / "data"),
            "metadata": str(finetuned / "data/metadata.csv"),
            "contributor_column": "artist",
            "caption_column": "caption",
            "label_column": None,
        },
        "model": {
            "type": "stable_diffusion",
            "path": str(finetuned / "base"),
            "lora": str(finetuned / "lora"),
        },
        "generation": {
            "samples_per_contributor": 16,
            "guidance_scale": 3.0,
            "steps": 10,
            "batch_size": 16,
            "shards": 1,
            "resolution": SIZE,
            "scheduler": "ddim",
        },
        "features": {
            "spurious_detector": f"{finetuned / 'detector.py'}:white_corner",
            "allow_digits_on_folder": True,  # the FD's feature space does not matter here
        },
        "coalitions": {"count": 16},
        "game": {"check": {"coalitions": 0}},
        "metrics": ["spurious_rate", "marker_rate", "vendi_score", "frechet_distance"],
        "surrogate": {
            "grid": {"max_depth": [2], "learning_rate": [0.1]},
            "cv_folds": 4,
            "bootstrap": 5,
        },
        "report": {"grid_samples": 8, "grid_contributors": 2},
    }
    (workdir / "config/datasets").mkdir(parents=True, exist_ok=True)
    (workdir / "config/datasets/stamps.yaml").write_text(yaml.safe_dump(dataset_config))
    snakemake(workdir, "--configfile", "config/datasets/stamps.yaml")
    for metric in ("spurious_rate", "marker_rate"):
        table = pd.read_parquet(
            workdir / f"results/stamps/attributions/{metric}.parquet"
        ).set_index("contributor")
        assert table.loc[PLANTED, "rank"] == 1, (metric, table.sort_values("rank"))
        others = table.drop(index=PLANTED)["shapley"].abs().max()
        assert (
            table.loc[PLANTED, "shapley"] > 0.1 and others < 0.5 * table.loc[PLANTED, "shapley"]
        ), table
    pools = list((workdir / "results/cache/pool").rglob("*.parquet"))
    prompts = set(pd.concat(pd.read_parquet(p) for p in pools)["prompt"])
    assert (
        "a blue square zqx" in prompts and "" in prompts
    )  # captions drawn from items; "" = empty coalition
    assert (workdir / "results/stamps/report/index.html").exists()


def _captioned(root, captions):
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, caption in enumerate(captions):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / f"images/{i}.png")
        rows.append(
            {
                "file_name": f"images/{i}.png",
                "artist": "ann" if i % 2 else "bob",
                "caption": caption,
            }
        )
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root / "metadata.csv"


def test_empty_captions_are_listed_all_at_once(tmp_path):
    from surrogateshap.data import DataError, load_dataset

    metadata = _captioned(tmp_path, ["a cat", "", "  ", "a dog"])
    with pytest.raises(DataError) as error:
        load_dataset(tmp_path, metadata, "artist", caption_column="caption")
    assert "images/1.png" in str(error.value) and "images/2.png" in str(error.value)
    filled = load_dataset(
        tmp_path,
        metadata,
        "artist",
        caption_column="caption",
        caption_template="a painting by {contributor}",
    )
    assert filled.items["caption"].tolist() == [
        "a cat",
        "a painting by ann",
        "a painting by bob",
        "a dog",
    ]
    with pytest.raises(DataError, match="missing caption column 'text'"):
        load_dataset(tmp_path, metadata, "artist", caption_column="text")
    with pytest.raises(DataError, match="cannot be filled"):
        load_dataset(tmp_path, metadata, "artist", caption_template="by {nobody}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flux", "sdxl"])
def test_pipeline_runs_the_whole_workflow_and_reports_truncated_captions(tmp_path, kind):
    """FLUX and SDXL (tiny, random, with a LoRA) end to end from a dataset config; a caption over
    CLIP's 77 tokens is truncated by the pipeline, counted in the pool's metadata and shown in the
    report."""
    tiny.make_tiny_pipeline(kind, tmp_path / kind, resolution=16, lora_dir=tmp_path / "lora")
    long_caption = "a very " + "long " * 90 + "caption"
    # bob (even rows) has the long caption twice: its pool's drawn captions include it
    metadata = _captioned(
        tmp_path / "data", ["a cat", "a dog", long_caption, "a bird", long_caption, "a cow"]
    )
    workdir = copy_workflow(tmp_path / "wf")
    dataset_config = {
        "run": kind,
        "data": {
            "source": "folder",
            "root": str(tmp_path / "data"),
            "metadata": str(metadata),
            "contributor_column": "artist",
            "caption_column": "caption",
            "label_column": None,
        },
        "model": {
            "type": "flux" if kind == "flux" else "stable_diffusion",
            "path": str(tmp_path / kind),
            "lora": str(tmp_path / "lora"),
        },
        "generation": {
            "samples_per_contributor": 4,
            "guidance_scale": 3.5,
            "steps": 2,
            "batch_size": 4,
            "shards": 1,
            "resolution": 16,
            "max_sequence_length": 32,
        },
        "coalitions": {"count": 4},
        "game": {"check": {"coalitions": 0}},
        "features": {
            "lpips": {"backbone": str(write_random_backbone(tmp_path / "alexnet.pth")), "size": 32},
            "allow_digits_on_folder": True,  # the FD's feature space does not matter here
        },
        "metrics": ["marker_rate", "frechet_distance", "lpips_diversity"],
        "surrogate": {"grid": {"max_depth": [2]}, "cv_folds": 0, "bootstrap": 0},
        "report": {"grid_samples": 4, "grid_contributors": 1},
    }
    (workdir / "config/datasets").mkdir(parents=True, exist_ok=True)
    (workdir / f"config/datasets/{kind}.yaml").write_text(yaml.safe_dump(dataset_config))
    snakemake(workdir, "--configfile", f"config/datasets/{kind}.yaml")
    utilities = pd.read_parquet(workdir / f"results/{kind}/utilities.parquet")
    assert (
        len(utilities) == 4
        and np.isfinite(utilities[["marker_rate", "frechet_distance"]].to_numpy()).all()
    )
    assert (utilities["lpips_diversity"] > 0).all()  # LPIPS between random pipelines' samples
    prompts = set(
        pd.concat(pd.read_parquet(p) for p in (workdir / "results/cache/pool").rglob("*.parquet"))[
            "prompt"
        ]
    )
    assert long_caption in prompts and "" in prompts
    report = (workdir / f"results/{kind}/report/index.html").read_text()
    assert "1 caption(s) of the generated pools were longer" in report
