"""transformers vision backbones by local path (features.extractor: backbone): DINOv2, ViT, CLIP
vision, SigLIP vision, as the metrics' extractor and the similarity baselines' feature space,
on tiny randomly initialised models written offline."""

import copy

import numpy as np
import pandas as pd
import pytest
import yaml

from surrogateshap.models.tiny import BACKBONE_KINDS, make_tiny_backbone, make_tiny_clip
from surrogateshap.proxy import extractors
from surrogateshap.workflow.config import ConfigError, merge, validate_config
from surrogateshap.workflow.steps import evaluation as evaluation_steps

from .conftest import SCHEMA, copy_workflow, snakemake


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    for kind in BACKBONE_KINDS:
        make_tiny_backbone(kind, root / kind)
    return root


@pytest.mark.parametrize("kind", BACKBONE_KINDS)
def test_each_backbone_embeds_grayscale_and_rgb_images(backbones, kind):
    extractor = extractors.load_extractor(
        {"extractor": "backbone", "backbone": str(backbones / kind)}, None
    )
    rng = np.random.default_rng(0)
    gray, rgb = (
        rng.random((5, 8, 8), dtype=np.float32),
        rng.random((3, 20, 20, 3), dtype=np.float32),
    )
    features, probs = extractor.embed(gray)
    assert features.shape == (5, 32) and np.isfinite(features).all() and probs.shape == (5, 1)
    assert np.abs(features[0] - features[1]).max() > 1e-4  # different images, different features
    np.testing.assert_allclose(extractor.embed(gray)[0], features)  # eval mode: deterministic
    assert extractor.embed(rgb)[0].shape == (3, 32)
    # the similarity baselines' feature space is the same network, found from its folder
    space = extractors.load_feature_space(str(backbones / kind))
    np.testing.assert_allclose(space.embed(gray)[0], features)


def test_a_full_clip_folder_gives_its_vision_tower(tmp_path):
    make_tiny_clip(tmp_path / "clip")
    extractor = extractors.BackboneExtractor(str(tmp_path / "clip"))
    assert extractor.kind == "clip_vision_model" and extractor.size == 16
    assert extractor.embed(np.zeros((2, 16, 16), np.float32))[0].shape == (2, 32)


def test_what_is_not_a_vision_backbone_is_refused(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        tmp_path / "bert"
    )
    with pytest.raises(ValueError, match="model_type 'bert' is not a supported vision backbone"):
        extractors.BackboneExtractor(str(tmp_path / "bert"))


def test_backbone_config_refusals(default_config, backbones):
    def config(**features):
        return merge(
            copy.deepcopy(default_config), {"features": {"extractor": "backbone", **features}}
        )

    with pytest.raises(ConfigError, match="features.backbone .* is not set"):
        validate_config(config(), SCHEMA)
    with pytest.raises(ConfigError, match="features.backbone: no such model folder"):
        validate_config(config(backbone="/nowhere/dinov2"), SCHEMA)
    # the default metrics include the IS-like score and mean confidence: no probabilities
    with pytest.raises(ConfigError, match=r"inception_score_like.*need class probabilities"):
        validate_config(config(backbone=str(backbones / "dinov2")), SCHEMA)
    fine = config(backbone=str(backbones / "dinov2"))
    fine["metrics"] = ["frechet_distance", "diversity", "vendi_score", "marker_rate"]
    validate_config(fine, SCHEMA)


@pytest.mark.slow
def test_dinov2_end_to_end_with_the_similarity_baselines(tmp_path, backbones):
    """The workflow on a tiny digits run measured in a tiny DINOv2's features, then the
    similarity baselines' feature-space values from the same pools in the same backbone."""
    workdir = copy_workflow(tmp_path / "wf")
    tiny = yaml.safe_load((workdir / "tests/configs/hostile.yaml").read_text())
    tiny.update(
        run="dino",
        features={"extractor": "backbone", "backbone": str(backbones / "dinov2")},
        metrics=["frechet_distance", "diversity", "vendi_score", "marker_rate"],
    )
    (workdir / "dino.yaml").write_text(yaml.safe_dump(tiny))
    snakemake(workdir, "--configfile", "dino.yaml", "--set-threads", "train_model=1")
    utilities = pd.read_parquet(workdir / "results/dino/utilities.parquet")
    assert np.isfinite(utilities[["frechet_distance", "diversity", "vendi_score"]].to_numpy()).all()
    assert utilities["frechet_distance"].std() > 0  # the backbone's features tell coalitions apart
    reference = next((workdir / "results/cache/reference").rglob("reference.parquet"))
    assert np.stack(pd.read_parquet(reference)["feature"].to_numpy()).shape == (1797, 32)
    data_dir = str(next((workdir / "results/cache/data").glob("data-*")))
    pools = sorted(str(p) for p in (workdir / "results/cache/pool").rglob("shards/*.parquet"))
    names = pd.read_parquet(workdir / "results/dino/contributors.parquet")["contributor"].tolist()
    for how in ("mean", "max"):
        values = evaluation_steps._similarity(
            data_dir, pools, str(backbones / "dinov2"), names, "feature", how
        )
        assert values.shape == (20,) and np.isfinite(values).all() and np.abs(values).max() > 0
