"""SurrogateSHAP: Shapley attribution of data contributors for diffusion models.

The package holds all the logic; the Snakemake workflow's rule scripts are thin
wrappers around it.
"""

__version__ = "0.1.0"
