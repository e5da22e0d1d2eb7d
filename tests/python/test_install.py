"""`pip install .` from the checkout works offline: a fresh virtual environment (seeing the system's
torch) installs the package through the in-repository build backend (pyproject.toml,
python/build_backend), with --no-index so that nothing can come from a package index, and the
installed package imports and computes outside the source tree."""

import os
import subprocess
import sys

import pytest

from conftest import DEMO, SOURCE_DIR

PYTHON = os.environ.get("KVPRIME_PYTHON", sys.executable)
BUILD_DIR = os.environ.get("KVPRIME_BUILD_DIR", str(SOURCE_DIR / "build"))


def test_pip_install_offline_into_a_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([PYTHON, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    # --system-site-packages shows the base interpreter's packages; where torch lives in another
    # environment (the GPU machine's python3 is itself a venv), a .pth file adds its directory.
    torch_site = subprocess.run([PYTHON, "-c", "import os, torch; "
                                 "print(os.path.dirname(os.path.dirname(torch.__file__)))"],
                                check=True, capture_output=True, text=True).stdout.strip()
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(site, "kvprime_test_torch.pth"), "w") as f:
        f.write(torch_site + "\n")
    env = dict(os.environ, KVPRIME_BUILD_DIR=BUILD_DIR, PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)  # the installed package, not the build tree's
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index", "--no-deps",
                        str(SOURCE_DIR)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    probe = ("import kvprime, torch; m = kvprime.Model.load({demo!r}); "
             "t = kvprime.Tokenizer.from_checkpoint({demo!r}); c = kvprime.ExperimentConfig(); "
             "n, cache = kvprime.build_kv_cache('Document:\\nA short passage.', m, t, c); "
             "print(kvprime.__file__); print(n, len(cache), kvprime.__version__)").format(demo=str(DEMO))
    r = subprocess.run([str(venv / "bin" / "python"), "-c", probe], env=env, cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    where, numbers = r.stdout.strip().splitlines()
    assert where.startswith(str(venv)), where
    n, length, version = numbers.split()
    assert int(n) == int(length) > 1
    assert version == open(SOURCE_DIR / "include" / "kvprime" / "core" / "version.h").read().split(
        'kVersion = "')[1].split('"')[0]
