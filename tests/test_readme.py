"""Every Python block of the README runs as written, in order, in one namespace (as a reader pastes
them into one session). A block that needs CUDA runs where numba's CUDA (or its simulator) does,
one that needs torch where torch is installed; the blocks after it then still run."""

import os
import re

import pytest

from conftest import HAS_CUDA

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def python_blocks():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 10


def test_every_readme_block_runs_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the checkpoint block writes ckpt/
    namespace = {"__name__": "readme"}
    ran = 0
    for k, block in enumerate(python_blocks()):
        if "cuda" in block and not HAS_CUDA:
            continue
        if "import torch" in block:
            try:
                import torch  # noqa: F401
            except ImportError:
                continue
        if "import jax" in block:
            try:
                import jax  # noqa: F401
                import optax  # noqa: F401
            except ImportError:
                continue
        try:
            exec(compile(block, f"README.md block {k + 1}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"README block {k + 1} raised {type(exc).__name__}: {exc}\n{block}")
        ran += 1
    assert ran >= 8
