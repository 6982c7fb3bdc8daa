"""Command-line launchers: record -> locate -> intervene -> report, each an absl app over a workdir.

`python -m launch.run --config=configs/valuelocate.py --workdir=runs/valuelocate` runs them all.
"""
