"""The rules' conda environments (envs/) parse, pin every package at requirements.txt's version,
and every rule runs in one of them (the GPU rules in the generation environment)."""

import re
import tomllib

import pytest
import yaml

from .conftest import ROOT

ENVS = {"generate": ROOT / "envs/generate.yaml", "fit": ROOT / "envs/fit.yaml"}
CPU_TORCH_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
# Needed by the process that runs Snakemake, not by the rules' scripts.
CONTROLLER_ONLY = {"snakemake", "snakemake-executor-plugin-slurm", "submitit"}
PROFILE = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
GPU_RULES = {rule for rule, resources in PROFILE["set-resources"].items() if resources.get("gpu")}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return normalize(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0])


def pinned_versions() -> dict[str, str]:
    """name -> version over requirements*.txt and the exact pins of pyproject's extras."""
    pins = {}
    for path in sorted(ROOT.glob("requirements*.txt")):
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[normalize(name)] = version.strip()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for specs in project.get("optional-dependencies", {}).values():
        for spec in specs:
            if "==" in spec:
                pins.setdefault(requirement_name(spec), spec.split("==", 1)[1].strip())
    return pins


def runtime_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {requirement_name(spec) for spec in project["dependencies"]} - CONTROLLER_ONLY


def pip_section(env: dict) -> list[str]:
    (section,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    return section


@pytest.mark.parametrize("name", sorted(ENVS))
def test_env_pins_agree_with_requirements(name):
    env = yaml.safe_load(ENVS[name].read_text())
    assert env["name"] == f"surrogateshap-{name}"
    assert "python=3.11" in env["dependencies"], "the pins are for Python 3.11 (requirements.txt)"
    pins = pinned_versions()
    packages = {}
    for line in pip_section(env):
        if line.startswith("-"):
            continue  # pip options (an index)
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[^\s=]+", line), (
            f"{ENVS[name]}: {line!r} is not pinned exactly"
        )
        package, version = line.split("==")
        assert normalize(package) in pins, (
            f"{ENVS[name]}: {package} is pinned nowhere in requirements*.txt / pyproject"
        )
        assert version == pins[normalize(package)], (
            f"{ENVS[name]}: {line}, but the pin is {pins[normalize(package)]}"
        )
        packages[normalize(package)] = version
    missing = {d for d in runtime_dependencies() if d not in packages}
    assert not missing, (
        f"{ENVS[name]} lacks runtime dependencies of pyproject.toml: {sorted(missing)}"
    )
    assert len({"xgboost", "xgboost-cpu"} & set(packages)) == 1, "exactly one XGBoost wheel"


def test_only_the_cpu_env_takes_torch_from_the_cpu_index():
    assert CPU_TORCH_INDEX in pip_section(yaml.safe_load(ENVS["fit"].read_text()))
    assert not any(
        "pytorch.org" in line for line in pip_section(yaml.safe_load(ENVS["generate"].read_text()))
    )


@pytest.mark.parametrize("name", sorted(ENVS))
def test_envs_take_the_package_from_the_workflow_source(name):
    """No post-deploy step installs the package from wherever Snakemake runs: every rule script
    puts the workflow's own src/ first on sys.path before it imports the package."""
    assert not ENVS[name].with_name(f"{name}.post-deploy.sh").exists()
    assert "surrogateshap" not in " ".join(pip_section(yaml.safe_load(ENVS[name].read_text())))
    scripts = sorted((ROOT / "workflow/scripts").glob("[!_]*.py"))
    assert scripts
    for script in scripts:
        imports = [
            line.split()[1]
            for line in script.read_text().splitlines()
            if line.startswith(("import ", "from "))
        ]
        assert imports and imports[0] == "_workflow_package", (
            f"{script.name}: imports {imports[:1]} before _workflow_package"
        )


def rule_envs() -> dict[str, str]:
    """rule -> the variable its conda: directive names, over workflow/rules/*.smk."""
    found = {}
    for path in sorted((ROOT / "workflow/rules").glob("*.smk")):
        for block in re.split(r"\n\s*rule ", "\n" + path.read_text())[1:]:
            name = block.split(":", 1)[0]
            if re.search(r"\n\s+(script|shell|run):", block):
                match = re.search(r"\n\s+conda:\s*\n\s+(\w+)", block)
                found[name] = match.group(1) if match else None
    return found


def test_every_rule_runs_in_one_of_the_envs():
    common = (ROOT / "workflow/rules/common.smk").read_text()
    variables = dict(re.findall(r'^(\w+_ENV) = "\.\./\.\./envs/(\w+)\.yaml"$', common, re.M))
    assert variables == {"GPU_ENV": "generate", "CPU_ENV": "fit"}
    envs = rule_envs()
    assert {"generate_pool", "attribute", "html_report"} <= set(
        envs
    ) and "generate_pool" in GPU_RULES
    for rule, variable in envs.items():
        expected = "GPU_ENV" if rule in GPU_RULES else "CPU_ENV"
        assert variable == expected, f"rule {rule}: conda: {variable}, expected {expected}"
