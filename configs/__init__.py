"""Run configurations: `get_config(arg)` in each file returns a locked ConfigDict for the launchers.

Pass them as `--config=configs/valuelocate.py` or with a variant, `--config=configs/valuelocate.py:smoke`.
"""
