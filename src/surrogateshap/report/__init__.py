"""The self-contained HTML report.

No imports here: importing a module of this folder runs this file first.
"""
