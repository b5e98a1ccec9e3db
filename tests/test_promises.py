"""Documented promises that had no test: seed_policy shared, model.lora_scale,
game.empty_coalition: noise, the p_top_k column, CSV coalition tables with '|', and HTML
escaping in the report (fast tier; the slow browser test also checks the rendered page)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from surrogateshap.estimation import estimators, surrogate
from surrogateshap.estimation.coalitions import sample_coalitions
from surrogateshap.models import class_conditional as models
from surrogateshap.proxy import game
from surrogateshap.workflow.steps.attribution import attribute
from surrogateshap.workflow.steps.data import draw_coalitions, prepare_data
from surrogateshap.workflow.steps.generation import generate_pool_shard

from .conftest import HOSTILE_NAMES


def _cond(n=3, items=4):
    return game.Conditioning([np.full(items, g) for g in range(n)], null_class=n)


def _tiny_model(tmp_path, n_classes=3, size=8):
    """An untrained class-conditional UNet folder, saved and reloaded as the workflow does."""
    from diffusers import DDPMScheduler

    torch.manual_seed(0)
    model = models.DiffusionModel(
        models.build_unet(n_classes, size, [8, 16]),
        dict(DDPMScheduler(num_train_timesteps=100).config),
        [f"c{i}" for i in range(n_classes)],
        "contributor",
        size,
    )
    models.save_diffusion(model, tmp_path / "model")
    return models.load_diffusion(str(tmp_path / "model"))


# --------------------------------------------------------------------------- seed_policy
def test_shared_seed_policy_gives_every_pool_and_coalition_the_same_noise(tmp_path):
    """`shared`: sample i starts from the same noise in every pool (and per-coalition draw), so two
    pools with the same conditioning are the same images; `per_image`: every pool its own noise."""
    cond = _cond()
    shared = [game.pool_plan(cond, g, 6, seed=1, seed_policy="shared")[1] for g in range(4)]
    shared += [game.coalition_plan(cond, c, 6, 1, "shared")[1] for c in [(), (0,), (1, 2)]]
    assert all((s == shared[0]).all() for s in shared)
    assert (shared[0] != game.pool_plan(cond, 0, 6, seed=2, seed_policy="shared")[1]).any()
    own = [game.pool_plan(cond, g, 6, seed=1, seed_policy="per_image")[1] for g in range(4)]
    assert len({tuple(s) for s in own}) == 4
    model = _tiny_model(tmp_path)

    def images(seeds, cls):
        return models.sample(
            model, np.full(len(seeds), cls), seeds, 2.0, 3, torch.device("cpu"), torch.float32, 4
        )

    np.testing.assert_array_equal(images(shared[0], 1), images(shared[3], 1))
    assert np.abs(images(own[0], 1) - images(own[3], 1)).mean() > 1e-3
    # the same noise, another class: the difference is the conditioning's alone
    assert np.abs(images(shared[0], 1) - images(shared[0], 2)).mean() > 1e-4


# --------------------------------------------------------------------------- empty_coalition
def _pool_shard(tmp_path, empty_coalition):
    from PIL import Image

    root = tmp_path / "data"
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(9):
        Image.fromarray(np.full((8, 8), 25 * i, np.uint8)).save(root / f"img/{i}.png")
        rows.append({"file_name": f"img/{i}.png", "contributor": f"c{i % 3}"})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    data_cfg = {
        "source": "folder",
        "root": str(root),
        "metadata": str(root / "metadata.csv"),
        "contributor_column": "contributor",
        "label_column": None,
        "min_items": 1,
        "image_size": 8,
    }
    if not (tmp_path / "prepared").exists():
        prepare_data(data_cfg=data_cfg, seed=0, out_dir=str(tmp_path / "prepared"))
        _tiny_model(tmp_path)
    gen_cfg = {
        "samples_per_contributor": 5,
        "guidance_scale": 2.0,
        "steps": 3,
        "batch_size": 8,
        "device": "cpu",
        "dtype": "float32",
        "seed_policy": "per_image",
    }
    out = tmp_path / f"{empty_coalition}.parquet"
    generate_pool_shard(
        data_dir=str(tmp_path / "prepared"),
        model=str(tmp_path / "model"),
        gen_cfg=gen_cfg,
        empty_coalition=empty_coalition,
        seed=7,
        scatteritem="1-of-1",
        threads=1,
        out_path=str(out),
    )
    from surrogateshap.proxy.features import read_images

    return read_images([out])


def test_noise_empty_coalition_is_the_starting_noise_and_shifts_values_equally(tmp_path):
    """`noise`: the empty coalition's pool is the sampler's starting noise x_T (each image's own
    CPU generator, N(0, 1) clamped to [-1, 1], mapped to [0, 1]), the contributors' pools are
    unchanged; in the Shapley values the choice shifts every value by the same
    (v_unconditional(empty) - v_noise(empty)) / n, so ranks do not change."""
    frame_noise, noise = _pool_shard(tmp_path, "noise")
    frame_unc, unconditional = _pool_shard(tmp_path, "unconditional")
    empty = (frame_noise["group"] == 3).to_numpy()
    expected = np.stack(
        [
            (
                (
                    torch.randn((8, 8), generator=torch.Generator().manual_seed(int(s))).clamp(
                        -1, 1
                    )
                    + 1
                )
                / 2
            ).numpy()
            for s in frame_noise["seed"][empty]
        ]
    )
    np.testing.assert_allclose(noise[empty], expected, atol=1 / 255)  # stored as 8-bit PNG
    assert np.abs(unconditional[empty] - expected).mean() > 0.05
    np.testing.assert_array_equal(noise[~empty], unconditional[~empty])
    assert (frame_noise["seed"] == frame_unc["seed"]).all()
    # the values: an exact game whose v(empty) is either choice
    n = 5
    coalitions = sample_coalitions(n, 2**n, "shapley_kernel", 0)
    x = np.array([[i in c for i in range(n)] for c in coalitions], dtype=np.float32)
    rng = np.random.default_rng(0)
    y = x @ rng.normal(size=n) + 0.3 * x[:, 0] * x[:, 1]
    names = [f"p{i}" for i in range(n)]
    cfg = {"bootstrap": 0, "ci_level": 0.9, "top_k": 2}
    shifted = y.copy()
    shifted[x.sum(1) == 0] -= 0.7  # another v(empty)
    a = estimators.attribute("exact", x, y, names, cfg, 0)[0].set_index("contributor").loc[names]
    b = (
        estimators.attribute("exact", x, shifted, names, cfg, 0)[0]
        .set_index("contributor")
        .loc[names]
    )
    np.testing.assert_allclose(b["shapley"] - a["shapley"], 0.7 / n, rtol=1e-9)
    assert (a["rank"] == b["rank"]).all()


# --------------------------------------------------------------------------- p_top_k
def test_p_top_k_is_the_bootstrap_share_of_replicates_ranking_a_player_in_the_top_k():
    boot = np.array(
        [[3.0, 2.0, 1.0, 0.0], [1.0, 3.0, 2.0, 0.0], [3.0, 1.0, 2.0, 5.0], [2, 3, 1, 0]]
    )
    _, _, top1 = surrogate.bootstrap_intervals(boot, 0.9, 1)
    _, _, top2 = surrogate.bootstrap_intervals(boot, 0.9, 2)
    np.testing.assert_allclose(top1, [1 / 4, 2 / 4, 0, 1 / 4])
    np.testing.assert_allclose(top2, [3 / 4, 3 / 4, 1 / 4, 1 / 4])


def test_p_top_k_in_the_attribution_table():
    """From the surrogate's bootstrap: shares that sum to k over the players (k places in every
    replicate); a dominant player is in the top k in every replicate, a negligible one never."""
    n, k = 8, 3
    coalitions = sample_coalitions(n, 120, "shapley_kernel", 0, paired=True)
    x = np.array([[i in c for i in range(n)] for c in coalitions], dtype=np.float32)
    weights = np.array([10.0, 5, 1, 0.9, 0.8, 0.7, 0.01, 0.0])
    y = x @ weights + np.random.default_rng(0).normal(scale=0.3, size=len(x))
    cfg = {
        "params": {"n_estimators": 50},
        "grid": {"max_depth": [2]},
        "cv_folds": 3,
        "bootstrap": 20,
        "ci_level": 0.9,
        "top_k": k,
        "threads": 1,
        "anchor_endpoints": True,
    }
    names = [f"p{i}" for i in range(n)]
    table, diag = estimators.attribute("surrogate", x, y, names, cfg, 0)
    table = table.set_index("contributor").loc[names]
    assert diag["bootstrap"] == 20
    assert table["p_top_k"].sum() == pytest.approx(k)
    assert table.loc["p0", "p_top_k"] == 1 and table.loc["p1", "p_top_k"] == 1
    assert table.loc["p6", "p_top_k"] == 0 and table.loc["p7", "p_top_k"] == 0
    assert set(np.round(table["p_top_k"] * 20, 9)) <= set(range(21))  # shares of 20 refits


# --------------------------------------------------------------------------- CSV coalition tables
def test_csv_coalition_table_members_separated_by_bars(tmp_path):
    """coalitions.table as CSV: members separated by '|' (names with spaces, commas, quotes kept
    whole by CSV quoting); an empty cell is the empty coalition; order and repeats kept."""
    names = ["alice smith", "Smith, John", 'O\'Brien "the quote"', "Zoë"]
    (tmp_path / "data").mkdir()
    pd.DataFrame({"contributor": names}).to_parquet(tmp_path / "data/contributors.parquet")
    members = [[], names, [names[1]], [names[3], names[0]], [names[2], names[1]], names]
    pd.DataFrame({"members": ["|".join(m) for m in members]}).to_csv(
        tmp_path / "coalitions.csv", index=False
    )
    out = tmp_path / "coalitions.parquet"
    draw_coalitions(
        data_dir=str(tmp_path / "data"),
        cfg={"table": str(tmp_path / "coalitions.csv")},
        out_path=str(out),
    )
    table = pd.read_parquet(out)
    order = {name: i for i, name in enumerate(names)}
    assert [list(m) for m in table["members"]] == [sorted(m, key=order.get) for m in members]
    assert table["size"].tolist() == [len(m) for m in members]
    pd.DataFrame({"members": ["alice smith|mallory"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: .*'mallory'"):
        draw_coalitions(
            data_dir=str(tmp_path / "data"),
            cfg={"table": str(tmp_path / "bad.csv")},
            out_path=str(out),
        )


# --------------------------------------------------------------------------- HTML escaping
def test_report_escapes_every_string_from_data_and_config(tmp_path, default_config):
    """write_report with hostile contributor names, run name and metric description: none of
    their markup reaches the page as markup, each name is there escaped."""
    import html

    from surrogateshap.proxy.features import write_images
    from surrogateshap.workflow.io import write_table

    names = [n for n in HOSTILE_NAMES if any(ch in n for ch in "<>&\"'")] + ["plain"]
    n = len(names)
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame(
        {"contributor": names, "key": [f"k{i}" for i in range(n)], "n_items": 3, "index": range(n)}
    ).to_parquet(data / "contributors.parquet")
    coalitions = sample_coalitions(n, 40, "shapley_kernel", 0)
    x = np.array([[i in c for i in range(n)] for c in coalitions], dtype=np.float32)
    y = x @ np.arange(1.0, n + 1)
    metric = {
        "name": "u",
        "title": "<b>U</b> & co",
        "direction": "higher",
        "description": "<script>alert('description')</script>",
    }
    write_table(
        tmp_path / "utilities.parquet",
        pd.DataFrame({"members": [[names[i] for i in c] for c in coalitions], "u": y}),
        metadata={"metrics": {"u": metric}},
    )
    cfg = dict(
        default_config["surrogate"],
        params={"n_estimators": 20},
        bootstrap=3,
        grid={"max_depth": [2]},
        cv_folds=2,
    )
    attribute(
        data_dir=str(data),
        utilities_path=str(tmp_path / "utilities.parquet"),
        metric="u",
        cfg=cfg,
        threads=1,
        out_path=str(tmp_path / "u.parquet"),
    )
    groups = np.repeat(np.arange(n + 1), 2)
    write_images(
        tmp_path / "pool.parquet",
        groups,
        np.tile([0, 1], n + 1),
        groups,
        np.arange(len(groups)),
        np.random.default_rng(0).uniform(size=(len(groups), 8, 8)).astype(np.float32),
    )
    (tmp_path / "classifier.json").write_text(json.dumps({"heldout_accuracy": 0.9}))
    config = json.loads(json.dumps(default_config))
    config["run"] = "<img src=x onerror=alert('run')>"
    config["report"]["grid_contributors"] = 3
    from surrogateshap.report.page import SCRIPT, write_report
    from surrogateshap.workflow.steps.attribution import payout

    payout(
        attribution_paths=[str(tmp_path / "u.parquet")],
        cfg=config["payout"],
        out_path=str(tmp_path / "payout.parquet"),
    )
    write_report(
        tmp_path / "index.html",
        config,
        {"data": "data-<i>key</i>"},
        [str(tmp_path / "u.parquet")],
        str(tmp_path / "utilities.parquet"),
        str(data / "contributors.parquet"),
        [str(tmp_path / "pool.parquet")],
        str(tmp_path / "classifier.json"),
        None,
        payout_path=str(tmp_path / "payout.parquet"),
    )
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert '<section id="payout">' in page
    own = f'<script id="report-script">{SCRIPT}</script>'  # the page's own script, once
    assert page.count(own) == 1
    page = page.replace(own, "")
    for markup in ("<script", "<img src=x", "<b>U</b>", "<i>key</i>"):
        assert markup not in page, markup
    for name in names:
        assert html.escape(name, quote=True) in page, name
    assert html.escape("<script>alert('description')</script>", quote=True) in page
    assert page.count("<script") == 0 and page.count("<img ") >= 2  # charts and grids only


# --------------------------------------------------------------------------- lora_scale
def test_lora_scale_weights_the_lora(tmp_path):
    """model.lora_scale: 0 gives the pipeline without its LoRA, 1 (the default) the LoRA as
    trained, 0.5 something between, nearer neither end."""
    from surrogateshap.models import t2i, tiny

    tiny.make_tiny_pipeline("sd", tmp_path / "pipe", resolution=16, lora_dir=tmp_path / "lora")
    spec = {"type": "stable_diffusion", "path": str(tmp_path / "pipe")}
    gen = {"steps": 2, "guidance_scale": 2.0, "batch_size": 2, "resolution": 16}
    classes, seeds = np.array([0, 1]), np.array([5, 6])

    def load(**lora):
        model = t2i.load(spec | lora, gen, torch.device("cpu"), torch.float32)
        model.class_names = ["a red square", "a blue square"]
        return model

    lora = str(tmp_path / "lora")
    plain = t2i.sample(load(), classes, seeds, gen)
    np.testing.assert_allclose(
        t2i.sample(load(lora=lora, lora_scale=0.0), classes, seeds, gen), plain, atol=1e-5
    )
    model = load(lora=lora, lora_scale=0.5)
    half = t2i.sample(model, classes, seeds, gen)
    model.pipe.set_adapters(["user"], adapter_weights=[1.0])  # the LoRA at full weight
    full = t2i.sample(model, classes, seeds, gen)
    gap = np.abs(full - plain).mean()
    assert gap > 1e-3
    assert np.abs(half - plain).mean() > 0.2 * gap and np.abs(half - full).mean() > 0.2 * gap
