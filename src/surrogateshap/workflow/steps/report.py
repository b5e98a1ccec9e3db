"""The rules of report.smk (and the evaluate target's evaluation_report): the self-contained
HTML report, built by surrogateshap.report.page."""

from __future__ import annotations

import shutil

from ...report import page as report


def write_report(*, evaluation_copy: str | None = None, **inputs) -> None:
    """The run's report from `inputs` (named as report.write_report names them). The evaluate
    target's report has an evaluation section (`evaluation_dir`), whose tables are also
    copied to `evaluation_copy` beside the report."""
    report.write_report(**inputs)
    if evaluation_copy:
        shutil.copytree(inputs["evaluation_dir"], evaluation_copy, dirs_exist_ok=True)
