"""Every command of the README runs, as written, against a platform this test starts.

The fenced ``sh`` and ``python`` blocks run in order, in a scratch directory holding a copy of
``examples/``, each ``sh`` block in ``bash -euo pipefail`` with the environment the blocks before it
exported (a user's terminal), starting from one without AWS settings or configuration files. The
only adaptation: the platform listens on a free port, so ``http://127.0.0.1:8042`` in a block is
that platform's URL (and KAMBDA_ENDPOINT says it to the kambda CLI). A block that cannot run here
says why in an HTML comment right above it (``<!-- not run: why -->``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO, Platform

BLOCK = re.compile(r"(?:<!--\s*not run:\s*(?P<why>[^>]*?)\s*-->\s*\n)?^```(?P<lang>\w*)\n(?P<body>.*?)^```",
                   re.S | re.M)
README_URL = "http://127.0.0.1:8042"


def blocks() -> list[tuple[str, str, str]]:
    """(language, body, why it is not run or "") of every fenced block."""
    text = (REPO / "README.md").read_text()
    return [(m["lang"], m["body"], m["why"] or "") for m in BLOCK.finditer(text)]


def _clean_environment(home: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KAMBDA_", "BOTO"))}
    bin_dir = str(Path(sys.executable).parent)
    return {**env, "HOME": str(home), "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
            "KAMBDA_ENDPOINT": url, "COLUMNS": "120"}


def _exported(path: Path) -> dict[str, str]:
    env = {}
    for entry in path.read_bytes().split(b"\0"):
        key, sep, value = entry.decode(errors="replace").partition("=")
        if sep and key:
            env[key] = value
    return env


def test_the_readme_names_a_reason_for_every_block_it_does_not_run() -> None:
    found = blocks()
    shell = [b for b in found if b[0] in ("sh", "python")]
    assert len(shell) >= 6
    skipped = [b for b in shell if b[2]]
    assert all(why for _, _, why in skipped)
    assert any("kambda up" in body for _, body, why in skipped if why)  # the server is started by the test


def test_the_aws_extra_installs_what_the_readme_uses() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=\[; ]", requirement)[0] for requirement in extras["aws"]}
    assert {"boto3", "awscli"} <= names
    text = (REPO / "README.md").read_text()
    assert "pip install -e '.[aws]'" in text


def test_every_readme_command_runs(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "state").start()
    try:
        work = tmp_path / "work"
        work.mkdir()
        shutil.copytree(REPO / "examples", work / "examples")
        env = _clean_environment(tmp_path / "home", platform.url)
        (tmp_path / "home").mkdir()
        ran = 0
        for number, (lang, body, why) in enumerate(blocks()):
            if why or lang not in ("sh", "python"):
                continue
            script = body.replace(README_URL, platform.url)
            if lang == "sh":
                saved = tmp_path / f"env-{number}"
                argv = ["bash", "-euo", "pipefail", "-c", f"{script}\nenv -0 > {saved}"]
            else:
                argv = [sys.executable, "-c", script]
            done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, f"README block {number} failed:\n{script}\n{done.stdout}\n{done.stderr}"
            assert "Traceback" not in done.stderr and "kambda: " not in done.stderr, done.stderr
            if lang == "sh":
                env = _exported(saved)
            ran += 1
        assert ran >= 4
        assert env.get("AWS_DEFAULT_REGION") and env.get("AWS_ACCESS_KEY_ID")  # the README had them set
        assert '"message": "Hello, world!"' in (work / "out.json").read_text()  # what `aws lambda invoke` wrote
    finally:
        platform.stop()
