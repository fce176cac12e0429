"""The docs site builds with `mkdocs build --strict` (every nav entry exists, every link and anchor
resolves), as `make docs` and CI build it."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from .conftest import ROOT


def test_mkdocs_strict_build(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "config" / "index.html").is_file()
    print(f"mkdocs build --strict: {time.monotonic() - started:.1f} s")
