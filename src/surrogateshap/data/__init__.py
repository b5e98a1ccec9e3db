"""Datasets and what is made or checked from them: the folder and digits datasets, planted
effects, the synthetic shapes and scenes datasets, and `check-data`.

No imports here: importing a module of this folder runs this file first.
"""
