import copy
import re

import pytest

from surrogateshap.workflow.config import ConfigError, stage_keys, validate_config

from .conftest import SCHEMA


def test_default_config_validates(default_config):
    assert default_config["run"] == "demo"
    assert len(default_config["metrics"]) == 5


@pytest.mark.parametrize(
    "path, value, field",
    [
        (("generation", "steps"), 0, "generation.steps"),
        (("game", "mode"), "magic", "game.mode"),
        (("coalitions", "sampler"), "random", "coalitions.sampler"),
        (("metrics",), ["fid_typo"], "metrics.0"),
        (("generation", "guidance"), 2.0, "generation"),  # unknown key: a typo is an error
        (("surrogate", "grid", "base"), ["none", "kernal"], "surrogate.grid.base.1"),
    ],
)
def test_schema_errors_name_the_field(default_config, path, value, field):
    config = copy.deepcopy(default_config)
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA)
    assert field in str(error.value)


def test_folder_source_needs_a_root(default_config):
    config = copy.deepcopy(default_config)
    config["data"]["source"] = "folder"
    with pytest.raises(ConfigError, match="data.root"):
        validate_config(config, SCHEMA)


def test_an_old_config_with_surrogate_threads_is_told_to_remove_it(default_config):
    # XGBoost's threads are the rules' `threads` (a profile's set-threads), not a config setting
    assert "threads" not in default_config["surrogate"]
    config = _changed(default_config, ("surrogate", "threads"), 4)
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA, source="old.yaml")
    message = str(error.value)
    assert "old.yaml" in message and "surrogate.threads" in message
    assert "remove it" in message and "set-threads" in message, message


def _changed(config, path, value):
    config = copy.deepcopy(config)
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


def _diff(default_config, path, value):
    changed = _changed(default_config, path, value)
    a, b = stage_keys(default_config), stage_keys(changed)
    return {stage for stage in a if a[stage] != b[stage]}


def test_surrogate_settings_change_only_the_attribution_key(default_config):
    # and what the evaluation builds on the attributions; never the held-out retraining game
    assert _diff(default_config, ("surrogate", "bootstrap"), 5) == {
        "attribution",
        "baselines",
        "counterfactual",
        "evaluation",
    }


def test_counterfactual_settings_do_not_retrain_the_heldout_coalitions(default_config):
    assert _diff(default_config, ("evaluation", "counterfactual", "k"), [1]) == {
        "baselines",
        "counterfactual",
        "evaluation",
    }
    assert _diff(default_config, ("evaluation", "retrain", "samples"), 64) == {
        "retrain",
        "counterfactual",
        "fidelity",
        "evaluation",
    }


def test_finetune_settings_keep_the_full_retrains_of_the_fidelity_check(default_config):
    finetune = {"train": {"steps": 10}, "reinit": ["class_embedding"]}
    assert _diff(default_config, ("evaluation", "retrain", "finetune"), finetune) == {
        "retrain",
        "counterfactual",
        "evaluation",
    }
    # the LDS bootstrap reads only the retrained utilities
    assert _diff(default_config, ("evaluation", "lds"), {"bootstrap": 10, "level": 0.8}) == {
        "evaluation"
    }


def test_finetune_game_needs_the_workflows_contributor_conditioned_model(default_config):
    config = _changed(default_config, ("model", "conditioning"), "label")
    with pytest.raises(ConfigError, match="finetune"):
        validate_config(config, SCHEMA)
    validate_config(_changed(config, ("evaluation", "retrain", "game"), "full"), SCHEMA)


def test_the_auto_game_is_finetune_where_it_can_be_and_full_elsewhere(default_config):
    """`evaluation.retrain.game: auto` (the default) is resolved when the config is read: the
    cheaper game for the workflow's contributor-conditioned model, full retraining otherwise (a
    text-to-image or label-conditioned model), so those configs are not refused."""
    assert default_config["evaluation"]["retrain"]["game"] == "finetune"
    config = _changed(default_config, ("evaluation", "retrain", "game"), "auto")
    config = _changed(config, ("model", "conditioning"), "label")
    assert validate_config(config, SCHEMA)["evaluation"]["retrain"]["game"] == "full"


def test_metric_settings_do_not_change_generation(default_config):
    changed = _diff(default_config, ("features", "marker_threshold"), 0.7)
    assert "pool" not in changed and "model" not in changed
    assert {"features", "utilities", "attribution"} <= changed


def test_guidance_changes_generation(default_config):
    changed = _diff(default_config, ("generation", "guidance_scale"), 3.0)
    assert {"pool", "features", "utilities", "attribution"} <= changed
    assert "model" not in changed and "data" not in changed


def test_run_name_changes_no_stage(default_config):
    assert _diff(default_config, ("run",), "another") == set()


def test_user_checkpoint_skips_data_dependence(default_config):
    config = copy.deepcopy(default_config)
    config["model"]["path"] = "/models/mine"
    keys = stage_keys(config)
    config["model"]["train"]["steps"] = 5
    assert stage_keys(config)["model"] == keys["model"]


def test_a_lora_regenerates_the_pools_without_retraining_the_pipeline(default_config):
    """model.lora and model.lora_scale are loaded with the pipeline by the generation jobs: the
    tiny_text_to_image pipeline the workflow trains is trained once for every LoRA and scale."""
    config = _changed(default_config, ("model", "type"), "tiny_text_to_image")
    config = _changed(config, ("data", "caption_template"), "a picture by {contributor}")
    config = _changed(config, ("evaluation", "retrain", "game"), "full")
    config = _changed(config, ("model", "lora"), "lora-dir")
    keys = stage_keys(validate_config(config, SCHEMA), {"files": {"model.lora": "weights-1"}})
    for path, value in ((("model", "lora"), "other-dir"), (("model", "lora_scale"), 0.0)):
        changed = stage_keys(
            validate_config(_changed(config, path, value), SCHEMA),
            {"files": {"model.lora": "weights-1"}},
        )
        assert changed["model"] == keys["model"], path
        assert changed["pool"] != keys["pool"], path
    # new weights in the same LoRA folder: new pools, the same pipeline
    changed = stage_keys(validate_config(config, SCHEMA), {"files": {"model.lora": "weights-2"}})
    assert changed["model"] == keys["model"] and changed["pool"] != keys["pool"]


def test_a_lora_is_refused_for_the_class_conditional_model(default_config):
    with pytest.raises(ConfigError, match="model.lora: a LoRA is loaded into a text-to-image"):
        validate_config(_changed(default_config, ("model", "lora"), "lora-dir"), SCHEMA)


def test_empty_coalition_definition_regenerates_only_the_pool_and_below(default_config):
    changed = _diff(default_config, ("game", "empty_coalition"), "noise")
    assert {"pool", "features", "utilities", "attribution"} <= changed
    assert "model" not in changed and "coalitions" not in changed


def test_coalition_rounds_make_the_utilities_depend_on_the_surrogate(default_config):
    adaptive = _changed(
        default_config,
        ("coalitions", "rounds"),
        {"max": 3, "threshold": 0.95, "patience": 2, "metrics": None},
    )
    assert "utilities" in _diff(adaptive, ("surrogate", "bootstrap"), 5)
    assert "utilities" not in _diff(default_config, ("surrogate", "bootstrap"), 5)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"game": {"mode": "per_coalition"}}, "needs game.mode: pooled"),
        ({"coalitions": {"table": "my.parquet"}}, "coalitions.table fixes them"),
        ({"coalitions": {"rounds": {"max": 2, "metrics": ["fid"]}}}, "not in metrics: ['fid']"),
    ],
)
def test_coalition_rounds_refuse_what_they_cannot_do(default_config, change, message):
    config = copy.deepcopy(default_config)
    config["coalitions"]["rounds"]["max"] = 2
    for section, values in change.items():
        for key, value in values.items():
            config[section][key] = (
                dict(config[section][key], **value) if isinstance(value, dict) else value
            )
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(config, SCHEMA)


def test_key_order_and_new_null_settings_change_no_stage_key(default_config):
    reordered = copy.deepcopy(default_config)
    reordered["generation"] = dict(reversed(list(reordered["generation"].items())))
    reordered["features"]["a_future_setting"] = (
        None  # what a new optional setting with a null default adds
    )
    assert stage_keys(reordered) == stage_keys(default_config)


def test_payout_settings_are_checked_against_the_metrics(default_config):
    config = copy.deepcopy(default_config)
    assert config["payout"]["budget"] > 0 and config["payout"]["negative"] == "clip"
    config["payout"]["metrics"] = {"marker_rate": 2.0, "fid": 1.0}
    with pytest.raises(
        ConfigError, match=re.escape("payout.metrics names metric(s) not in metrics: ['fid']")
    ):
        validate_config(config, SCHEMA)
    config["payout"]["metrics"] = {"marker_rate": 0}
    with pytest.raises(ConfigError, match="payout.metrics.marker_rate"):
        validate_config(config, SCHEMA)
    # every payout stage setting changes no stage key: the payout is no cached stage
    assert stage_keys(_changed(default_config, ("payout", "budget"), 5.0)) == stage_keys(
        default_config
    )
