"""config/README.md is generated from the schema (surrogateshap.workflow.configdoc): it must be up to
date, and every leaf of the schema must carry the description it is built from."""

import copy

from surrogateshap.workflow import configdoc
from surrogateshap.workflow.config import load_yaml

from .conftest import ROOT, SCHEMA

CONFIG = ROOT / "config/config.yaml"


def test_every_schema_leaf_has_a_description():
    assert configdoc.leaves_without_description(load_yaml(SCHEMA)) == []


def test_a_leaf_without_description_is_caught():
    schema = copy.deepcopy(load_yaml(SCHEMA))
    del schema["properties"]["data"]["properties"]["digits"]["properties"]["planted"]["items"][
        "properties"
    ]["effect"]["description"]
    del schema["properties"]["features"]["properties"]["custom_metrics"]["additionalProperties"][
        "properties"
    ]["function"]["description"]
    assert configdoc.leaves_without_description(schema) == [
        "data.planted[].effect",  # one entry definition, shared by data.planted and the digits'
        "data.digits.planted[].effect",
        "features.custom_metrics.<name>.function",
    ]


def test_config_readme_is_up_to_date():
    page = configdoc.render(load_yaml(SCHEMA), load_yaml(CONFIG))
    assert (ROOT / "config/README.md").read_text(encoding="utf-8") == page, (
        "config/README.md is out of date: run `python -m surrogateshap.workflow.configdoc` from the root"
    )


def test_every_field_is_on_the_page():
    page = (ROOT / "config/README.md").read_text(encoding="utf-8")
    for field in configdoc.fields(load_yaml(SCHEMA)):
        section = "." not in field.path and not field.is_leaf  # a top-level section: a heading
        assert (f"## `{field.path}`" if section else f"| `{field.path}` |") in page, field.path
    # one row, spot-checked: type, default, the default config's value, the description
    assert (
        "| `surrogate.top_k` | integer ≥ 1 | `3` | `3` | report P(rank &lt;= top_k) from the bootstrap |"
        in page
    )


def test_check_fails_on_a_stale_page(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    stale = tmp_path / "README.md"
    stale.write_text(
        (ROOT / "config/README.md").read_text().replace("strongest pairwise interactions", "x")
    )
    assert configdoc.main(["--check", "--out", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert configdoc.main(["--out", str(stale)]) == 0  # regenerates it
    assert configdoc.main(["--check", "--out", str(stale)]) == 0
