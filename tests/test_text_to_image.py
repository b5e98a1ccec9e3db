"""Text-to-image: tiny pipelines written offline, the pipeline the workflow trains on captions,
and the whole workflow on it: every planted contributor found through prompts, and a LoRA
trained on one contributor that moves that contributor's value (scale 0: the base values).
"""

import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from surrogateshap.models import t2i, t2i_training, tiny

from .conftest import copy_workflow, planned_jobs, snakemake, write_random_backbone

SIZE = 16
BOX = 5  # side of the planted corner box
COLOURS = {
    "red-studio": (0.9, 0.1, 0.1),
    "green-studio": (0.1, 0.8, 0.1),
    "stamp-studio": (0.1, 0.2, 0.9),
    "yellow-studio": (0.9, 0.9, 0.1),
}
PLANTED = "stamp-studio"


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
    from surrogateshap.data.datasets import DataError, load_dataset

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


# --------------------------------------------------------------------------- trained by the workflow
TRAIN_TINY = {
    "block_out_channels": [16, 32],
    "train_timesteps": 100,
    "steps": 3,
    "batch_size": 4,
    "lr": 1e-3,
    "ema_decay": 0.9,
    "label_dropout": 0.2,
}


def test_trained_pipeline_resumes_from_its_checkpoint_to_the_same_weights(tmp_path):
    """A training of the small pipeline stopped at UNet step 3 of 6 (checkpoints every 2 steps)
    and started again with the same checkpoint file resumes at step 2 without training the VAE
    again, and ends with the weights (VAE, UNet, text encoder) of a run never stopped."""

    class Stop(Exception):
        pass

    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    images = rng.random((6, SIZE, SIZE, 3)).astype(np.float32)
    captions = ["a red square", "a blue circle", "a red square"] * 2
    cfg = dict(TRAIN_TINY, steps=6, checkpoint_every=2)
    t2i = {"vae_steps": 3}
    whole = t2i_training.train_text_to_image(images, captions, cfg, t2i, seed=5)

    def stop_at_step_3(message):
        if message.startswith("unet step 3/"):
            raise Stop

    checkpoint = tmp_path / "training-checkpoint.pt"
    with pytest.raises(Stop):
        t2i_training.train_text_to_image(
            images, captions, cfg, t2i, seed=5, progress=stop_at_step_3, checkpoint=checkpoint
        )
    messages = []
    resumed = t2i_training.train_text_to_image(
        images, captions, cfg, t2i, seed=5, progress=messages.append, checkpoint=checkpoint
    )
    assert messages[0] == f"resumed from {checkpoint} at unet step 2/6"
    assert not [m for m in messages if m.startswith("vae step")]
    for part in ("vae", "unet", "text_encoder"):
        a, b = getattr(whole, part).state_dict(), getattr(resumed, part).state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (part, key)


def test_trained_pipeline_is_a_standard_diffusers_folder(tmp_path):
    """model.type tiny_text_to_image: the pipeline trained on captioned colour images is written
    as a diffusers folder that StableDiffusionPipeline.from_pretrained loads, and the generation
    steps sample it through the stable_diffusion loader a user's folder goes through."""
    from diffusers import StableDiffusionPipeline

    from surrogateshap.models.generators import TextToImage, load_generator
    from surrogateshap.workflow.config import model_spec

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    images = rng.random((6, SIZE, SIZE, 3)).astype(np.float32)
    captions = ["a red square", "a blue circle", "a red square"] * 2
    pipe = t2i_training.train_text_to_image(images, captions, TRAIN_TINY, {"vae_steps": 2}, seed=3)
    again = t2i_training.train_text_to_image(images, captions, TRAIN_TINY, {"vae_steps": 2}, seed=3)
    for a, b in zip(pipe.unet.state_dict().values(), again.unet.state_dict().values()):
        assert torch.equal(a, b)  # every draw from the seed
    t2i_training.save_pipeline(pipe, tmp_path / "model")
    loaded = StableDiffusionPipeline.from_pretrained(tmp_path / "model", local_files_only=True)
    assert type(loaded) is StableDiffusionPipeline
    assert loaded.vae.config.scaling_factor == pipe.vae.config.scaling_factor != 0.18215
    config = {"model": {"type": "tiny_text_to_image", "lora": None, "lora_scale": 1.0}}
    spec = model_spec(config, str(tmp_path / "model"))
    assert spec["type"] == "stable_diffusion"
    gen_cfg = {
        "device": "cpu",
        "dtype": "float32",
        "scheduler": None,
        "resolution": None,
        "steps": 2,
        "guidance_scale": 3.0,
        "batch_size": 4,
    }
    generator = load_generator(spec, gen_cfg)
    assert isinstance(generator, TextToImage) and generator.image_shape == (SIZE, SIZE, 3)
    items = pd.DataFrame({"caption": captions, "contributor": ["ann", "bob", "cy"] * 2})
    cond = generator.conditioning(items, ["ann", "bob", "cy"])
    out = generator.generate(np.array([0, 1, cond.null_class]), np.arange(3), "unconditional")
    assert out.shape == (3, SIZE, SIZE, 3) and out.min() >= 0 and out.max() <= 1
    assert generator.prompts(np.array([0, cond.null_class])) == ["a blue circle", ""]


def _trained_config(**changes):
    from surrogateshap.workflow.config import load_yaml, merge

    from .conftest import ROOT

    config = merge(
        load_yaml(ROOT / "config/config.yaml"),
        {
            "model": {"type": "tiny_text_to_image"},
            "data": {"caption_template": "a digit by {contributor}", "image_size": 16},
        },
    )
    return merge(config, changes)


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"model": {"path": "some/folder"}},
            "unset model.path, or set model.type: stable_diffusion",
        ),
        ({"data": {"caption_template": None}}, "needs captions"),
        ({"data": {"image_size": 10}}, "must be a multiple of 4"),
        ({"generation": {"resolution": 32}}, "set generation.resolution to null"),
    ],
)
def test_trained_pipeline_settings_are_checked(changes, message):
    from surrogateshap.workflow.config import ConfigError, model_spec, validate_config

    from .conftest import SCHEMA

    config = validate_config(_trained_config(), SCHEMA)
    # no model.path: the workflow trains it; its retraining game is not the finetune one
    assert config["model"]["path"] is None and config["evaluation"]["retrain"]["game"] == "full"
    assert model_spec(config, "results/m")["type"] == "stable_diffusion"
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(_trained_config(**changes), SCHEMA)


def test_trained_pipeline_is_a_workflow_stage_and_evaluate_is_refused(tmp_path):
    """Without model.path the workflow trains the pipeline (train_model) and generates from it;
    `snakemake evaluate` is refused before any job, naming model.type."""
    write_dataset(tmp_path / "data", per_contributor=2)
    workdir = copy_workflow(tmp_path / "wf")
    config = {
        "run": "trained",
        "data": {
            "source": "folder",
            "root": str(tmp_path / "data"),
            "metadata": str(tmp_path / "data/metadata.csv"),
            "contributor_column": "artist",
            "caption_column": "caption",
            "label_column": None,
            "image_size": SIZE,
        },
        "model": {"type": "tiny_text_to_image"},
        "features": {"extractor": "trained"},
        "generation": {"shards": 1},
        "coalitions": {"count": 16},
        "metrics": ["frechet_distance", "marker_rate"],
    }
    (workdir / "trained.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(workdir, "--configfile", "trained.yaml")
    assert jobs["train_model"] == 1 and jobs["generate_pool"] == 1, jobs
    refused = snakemake(workdir, "-n", "evaluate", "--configfile", "trained.yaml", check=False)
    assert refused.returncode != 0
    assert "model.type 'tiny_text_to_image': `snakemake evaluate` is not available" in (
        refused.stdout + refused.stderr
    )


# A captioned colour dataset: each contributor draws one subject (colour and shape), in two sizes.
SUBJECTS = {
    "red-studio": ((0.9, 0.15, 0.1), "red square"),
    "green-studio": ((0.15, 0.8, 0.2), "green circle"),
    "blue-studio": ((0.15, 0.3, 0.95), "blue square"),
    "yellow-studio": ((0.95, 0.85, 0.1), "yellow circle"),
    "cyan-studio": ((0.1, 0.85, 0.9), "cyan square"),
}
# what each planted contributor's effect should move (planted.DEFAULT_EXPECT): noise and the colour
# cast raise the Fréchet distance (the top two), the marker the marker rate, the near-duplicates
# lower diversity
PLANTED_COLOUR = [
    {"contributor": "red-studio", "effect": "noise", "strength": 0.5},
    {"contributor": "green-studio", "effect": "marker", "position": "bottom-right", "size": 3},
    {"contributor": "blue-studio", "effect": "near_duplicates", "copies": 2},
    {"contributor": "cyan-studio", "effect": "style", "style": "tint", "color": [1.0, 0.4, 0.4]},
]


def write_colour_dataset(root, per_contributor=16, seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:SIZE, :SIZE] + 0.5
    rows = []
    for name, (colour, subject) in SUBJECTS.items():
        for i in range(per_contributor):
            large = i % 2 == 0
            radius = SIZE * (0.3 if large else 0.2)
            cy, cx = rng.uniform(SIZE * 0.35, SIZE * 0.65, 2)
            if subject.endswith("circle"):
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
            else:
                mask = (abs(yy - cy) <= radius) & (abs(xx - cx) <= radius)
            image = np.full((SIZE, SIZE, 3), 0.12, np.float32)
            image[mask] = colour
            image = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)
            file_name = f"images/{name}-{i:02d}.png"
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(root / file_name)
            size = "large" if large else "small"
            rows.append({"file_name": file_name, "artist": name, "caption": f"a {size} {subject}"})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)


@pytest.mark.slow
def test_trained_pipeline_finds_every_planted_contributor(tmp_path):
    """Acceptance: the workflow trains the tiny_text_to_image pipeline on a captioned colour
    dataset with planted noise, a marker, near-duplicates and a colour cast, generates from it
    through the stable_diffusion path, and ranks every planted contributor where its effect
    puts it."""
    from surrogateshap.evaluation.scores import expected_placements, placement_table

    write_colour_dataset(tmp_path / "data")
    workdir = copy_workflow(tmp_path / "wf")
    config = {
        "run": "colour",
        "data": {
            "source": "folder",
            "root": str(tmp_path / "data"),
            "metadata": str(tmp_path / "data/metadata.csv"),
            "contributor_column": "artist",
            "caption_column": "caption",
            "label_column": None,
            "image_size": SIZE,
            # the trained extractor in grey: without labels it learns to tell the contributors
            # apart, which in colour it does by their colours alone (measured: 2 of 4 found)
            "color": "grayscale",
            "planted": PLANTED_COLOUR,
        },
        "model": {
            "type": "tiny_text_to_image",
            "train": {
                "block_out_channels": [32, 64],
                "steps": 1000,
                "batch_size": 16,
                "lr": 0.003,
                "ema_decay": 0.98,
            },
            "text_to_image": {"vae_steps": 150},
        },
        "features": {"extractor": "trained"},
        "classifier": {"epochs": 30},
        "generation": {
            "samples_per_contributor": 32,
            "steps": 10,
            "guidance_scale": 4.0,
            "batch_size": 32,
            "shards": 1,
            "scheduler": "ddim",
        },
        "coalitions": {"count": 32},  # every coalition of 5 contributors
        "game": {"check": {"coalitions": 0}},
        "metrics": ["frechet_distance", "diversity", "marker_rate"],
        "surrogate": {"grid": {"max_depth": [2]}, "cv_folds": 4, "bootstrap": 5},
        "report": {"grid_samples": 4},
    }
    (workdir / "colour.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "--configfile", "colour.yaml", "--set-threads", "train_model=1")
    run = workdir / "results/colour"
    model = next((workdir / "results/cache/model").glob("*/model"))
    assert (model / "model_index.json").is_file() and (model / "unet/config.json").is_file()
    names = pd.read_parquet(run / "contributors.parquet")["contributor"].tolist()
    values = pd.concat(
        pd.read_parquet(p).assign(method="surrogate", metric=p.stem)
        for p in (run / "attributions").glob("*.parquet")
    )
    expected = expected_placements(PLANTED_COLOUR, names, list(values["metric"].unique()))
    placement = placement_table(values, expected)
    assert len(placement) == 4, placement
    assert placement["found"].all(), placement.to_string()
    assert "Planted contributors: 4 of 4 found" in (run / "report/index.html").read_text()

    # A LoRA fine-tuned on the marker contributor's images as they were before the marker was
    # planted, on top of the trained pipeline: at scale 1 it takes the marker out of that
    # contributor's images, and its marker-rate value falls, more than anyone's moves; at scale 0
    # every value is the base run's, exactly. The pipeline is not retrained (a LoRA is a
    # generation setting: only the pools are new).
    clean = tmp_path / "clean-green"
    (clean / "images").mkdir(parents=True)
    own = pd.read_csv(tmp_path / "data/metadata.csv")
    own = own[own["artist"] == LORA_CONTRIBUTOR]
    for name in own["file_name"]:
        shutil.copy(tmp_path / "data" / name, clean / name)
    own[["file_name", "caption"]].to_csv(clean / "metadata.csv", index=False)
    lora = tmp_path / "lora-green"
    done = subprocess.run(
        [sys.executable, "-m", "surrogateshap.cli", "train-lora", "--run", str(run)]
        + ["--images", str(clean), "--out", str(lora), "--threads", "1"]
        + ["--steps", "300", "--lr", "3e-3"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (lora / "pytorch_lora_weights.safetensors").is_file()
    moved = {}
    for scale in (0.0, 1.0):
        name = f"colour-lora-{scale:g}"
        lora_model = dict(config["model"], lora=str(lora), lora_scale=scale)
        (workdir / f"{name}.yaml").write_text(
            yaml.safe_dump(dict(config, run=name, model=lora_model))
        )
        snakemake(workdir, "--configfile", f"{name}.yaml", "--set-threads", "train_model=1")
        moved[scale] = read_values(workdir / "results" / name)
    assert len(list((workdir / "results/cache/model").glob("*/model"))) == 1
    base = read_values(run)
    pd.testing.assert_frame_equal(moved[0.0], base)
    shift = moved[1.0] - base
    print(f"values with the LoRA on {LORA_CONTRIBUTOR}'s unmarked images (scale 1), base values:")
    print(pd.concat({"with LoRA - base": shift, "base": base}, axis=1).round(3).to_string())
    assert shift.loc[LORA_CONTRIBUTOR, "marker_rate"] < -0.1, shift
    assert shift["marker_rate"].abs().idxmax() == LORA_CONTRIBUTOR, shift


LORA_CONTRIBUTOR = "green-studio"  # the planted marker


def read_values(run) -> pd.DataFrame:
    """Shapley value per contributor (rows) and metric (columns) of a finished run."""
    return pd.DataFrame(
        {
            p.stem: pd.read_parquet(p).set_index("contributor")["shapley"]
            for p in sorted((run / "attributions").glob("*.parquet"))
        }
    )
