"""The newcomer README stays short, every relative link in the docs leads to a file, every
script answers --help and every command in the docs runs in a safe form."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .conftest import ROOT, SNAKEMAKE

# Pages other branches add (issue 18): linked from the README before they land. The lead empties
# this set when merging them; a page listed here that exists is reported, so it cannot linger.
PENDING: set[str] = set()
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_readme_is_a_short_newcomer_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 8_192
    for text in ("make demo", "make test", "--configfile", "--profile profiles/slurm"):
        assert text in readme, text
    assert (ROOT / "docs/images/report.png").stat().st_size > 10_000


def test_every_relative_link_resolves():
    pages = [ROOT / "README.md", ROOT / "config/README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            relative = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else target
            if not path.exists() and relative not in PENDING:
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken
    landed = sorted(p for p in PENDING if (ROOT / p).exists())
    assert not landed, f"remove {landed} from tests/test_docs.py PENDING"


# Every command in the docs, run in a safe form (issue: docs whose commands are tested). A fenced
# block tagged bash/sh/shell/console and a 4-space indented block are commands: `snakemake` runs
# with -n, `make` with -n, `surrogateshap X` and the scripts of benchmarks/ answer --help after
# every flag the doc gives them is checked against that help, so a removed flag or a renamed rule
# or target fails here. Commands that cannot run here are skipped by name, with the reason.
SHELL_TAGS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(\s*)```(\w*)[^\n]*\n(.*?)^\1```", re.S | re.M)
COMMAND = re.compile(
    r"^(?:[A-Z_]+=\S*\s+)*(?:nice -n \d+\s+)?(?:\S*/)?"
    r"(?:python3?(?:\.\d+)?|snakemake|surrogateshap|make|bash)\s"
)
SKIP = {
    "git": "clones a repository",
    "snakedeploy": "deploys into a new folder (tests/test_deploy.py runs it)",
    "sed": "edits the deployed copy",
    "cd": "the commands after it run in the deployed copy; here, in the root",
    "docker": "needs a registry",
    "pip": "installs packages",
    "$EDITOR": "an editor",
    "python3.12": "creates the benchmark's own shapiq venv",
}
# Files a reader writes first: the commands that read them run with the embedded default instead.
PLACEHOLDERS = {"my.yaml": None}
HELP_CACHE: dict[tuple[str, ...], str] = {}


def _scripts() -> list[Path]:
    return sorted(p for p in (ROOT / "benchmarks").glob("[!_]*.*") if p.suffix in {".py", ".sh"})


def _help_command(script: Path) -> tuple[str, ...]:
    if script.suffix == ".sh":
        return ("bash", str(script), "--help")
    return (sys.executable, str(script), "--help")


def _help(command: tuple[str, ...]) -> str:
    if command not in HELP_CACHE:
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"{' '.join(command)}: {run.stderr[-2000:]}"
        HELP_CACHE[command] = run.stdout
    return HELP_CACHE[command]


def _prefetch(commands) -> None:
    """--help of several scripts at once: most import torch before their parser."""
    todo = [c for c in dict.fromkeys(commands) if c not in HELP_CACHE]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        list(pool.map(_help, todo))


def test_every_script_answers_help(tmp_path):
    scripts = _scripts()
    env_out = tmp_path / "out"
    os.environ["OUT"] = str(env_out)  # gpu_check.sh's output folder: --help must not create it
    try:
        _prefetch(_help_command(s) for s in scripts)
    finally:
        del os.environ["OUT"]
    for script in scripts:
        text = _help(_help_command(script))
        assert script.name in text or "usage" in text.lower(), script
    assert not env_out.exists()
    assert not (ROOT / "gpu_check_out").exists()


def doc_commands() -> list[tuple[str, str]]:
    """(page, command) for every command line in README.md and docs/*.md, continuations joined."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        blocks = []
        for _indent, tag, body in FENCE.findall(text):
            if tag in SHELL_TAGS:
                blocks.append(body)
            elif not tag:
                first = next((ln.strip() for ln in body.splitlines() if ln.strip()), "")
                assert not COMMAND.match(first), f"{page.name}: tag the block of `{first}` bash"
        outside = FENCE.sub("", text)
        blocks.append(
            "\n".join(
                ln for ln in outside.splitlines() if ln.startswith("    ") or ln.endswith("\\")
            )
        )
        for body in blocks:
            lines = [ln.strip() for ln in body.replace("\\\n", " ").splitlines()]
            found += [
                (page.name, ln.removeprefix("$ "))
                for ln in lines
                if COMMAND.match(ln.removeprefix("$ ")) or ln.split(" ")[0] in SKIP
            ]
    return found


def _segments(command: str) -> list[list[str]]:
    """A line's commands: split at && and ;, a pipe's first command, comments and KEY=value and
    `nice -n N` dropped."""
    words = shlex.split(command, comments=True)
    out, current = [], []
    for word in [*words, "&&"]:
        if word.startswith(">"):  # a redirection: the command's output goes elsewhere
            word = "|"
        if word in {"&&", ";", "|", "||"}:
            while current and (re.fullmatch(r"[A-Z_]+=.*", current[0]) or current[0] == "nice"):
                current = current[3:] if current[0] == "nice" else current[1:]
            if current:
                out.append(current)
            current = [] if word != "|" else None
            if word == "|":
                break
        elif current is not None:
            current.append(word)
    return out


def _flags(words: list[str]) -> list[str]:
    return [w.split("=")[0] for w in words if re.fullmatch(r"--[a-z][a-z0-9-]*(=.*)?", w)]


def _options(text: str, shell: bool) -> set[str]:
    """The flags a --help offers: argparse's usage block and option lines (not its description,
    whose examples may name a flag that is gone); a shell script's header as a whole."""
    usage = text.split("\n\n")[0]
    lines = [usage, *(ln for ln in text.splitlines() if re.match(r"\s+-", ln))]
    return set(re.findall(r"--[a-z][a-z0-9-]*", text if shell else "\n".join(lines)))


def _snakemake_dry(words: list[str]) -> tuple[str, ...]:
    args, skip_next = [], False
    for i, word in enumerate(words[1:]):
        if skip_next:
            skip_next = False
            continue
        if word in {"--cores", "-c", "-j", "--jobs"}:
            skip_next = True  # the plan does not depend on the cores
            continue
        if word in PLACEHOLDERS and i and words[i] == "--configfile":
            args.pop()
            continue
        args.append(word)
    if "--containerize" in args:
        return (SNAKEMAKE, *args)
    return (SNAKEMAKE, "-n", "--cores", "1", *args)


def test_every_documented_command_runs():
    commands = doc_commands()
    assert len(commands) > 20
    helps, dry, make, problems = [], {}, {}, []
    for page, line in commands:
        for words in _segments(line):
            program = Path(words[0]).name
            where = f"{page}: {line}"
            module = words[2] if words[1:2] == ["-m"] else None
            if words[0] in SKIP or program in SKIP or module in SKIP:
                continue
            elif program == "snakemake" and "--containerize" in words and not shutil.which("conda"):
                helps.append(((SNAKEMAKE, "--help"), words, where))  # it runs `conda info`
            elif program == "snakemake":
                dry.setdefault(_snakemake_dry(words), where)
            elif program == "make":
                make.setdefault(("make", "-n", *words[1:]), where)
            elif program == "surrogateshap":
                cli = (sys.executable, "-c", CLI, words[1], "--help")
                helps.append((cli, words, where))
            elif program == "bash" or re.fullmatch(r"python3?", program):
                if module == "pytest":
                    paths = [
                        w.split("::")[0] for w in words[3:] if w.split("::")[0].endswith(".py")
                    ]
                    if not all((ROOT / w).exists() for w in paths):
                        problems.append(f"{where}: no such test file")
                elif module:
                    if not (ROOT / (module.replace(".", "/") + ".py")).exists():
                        if module.split(".")[0] != "surrogateshap":
                            problems.append(f"{where}: no module {module}")
                elif not (ROOT / words[1]).exists():
                    problems.append(f"{where}: no such script")
                elif "--" in words:  # benchmarks/stages.py -- <Snakemake's arguments>
                    cut = words.index("--")
                    helps.append((_help_command(ROOT / words[1]), words[:cut], where))
                    dry.setdefault(_snakemake_dry(["snakemake", *words[cut + 1 :]]), where)
                else:
                    helps.append((_help_command(ROOT / words[1]), words, where))
            else:
                problems.append(f"{where}: no safe form for {program}; add it to SKIP")
    _prefetch(command for command, _, _ in helps)
    for command, words, where in helps:
        options = _options(_help(command), shell=command[0] == "bash")
        missing = [f for f in _flags(words) if f not in options]
        if missing:
            problems.append(f"{where}: {missing} not in its --help")
    # the plans only: a documented dataset (resources/shapes) is made by the page's earlier
    # command, which runs here as --help, so the parse-time input checks are off
    env = dict(os.environ, SURROGATESHAP_PREFLIGHT="off")
    for command, where in [*dry.items(), *make.items()]:
        run = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
        )
        if run.returncode:
            problems.append(f"{where}\n  {' '.join(command)}\n  {run.stderr[-1500:]}")
    assert not problems, "\n".join(problems)


CLI = "import sys; from surrogateshap.cli import main; sys.exit(main())"
