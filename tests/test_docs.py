"""The newcomer README stays short, and every relative link in the docs leads to a file."""

import re

from .conftest import ROOT

# Pages other branches add (issue 18): linked from the README before they land. The lead empties
# this set when merging them; a page listed here that exists is reported, so it cannot linger.
PENDING: set[str] = set()
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_readme_is_a_short_newcomer_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 12_000
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
