"""The Dockerfile (which cannot be built here: no container engine) read with dockerfile-parse.

Checks what would break the image on a cluster: a root user, a single stage, an ENTRYPOINT that
hides the three commands, a command in the chart that the image does not have, or a file the
packages need that `pip install .` or the build context would leave out.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from tests.chart import VARIANTS, objects_of, render, workloads

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]


def stages() -> list[list[dict[str, Any]]]:
    """Instructions grouped by build stage (a FROM starts one)."""
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    result: list[list[dict[str, Any]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            result.append([])
        if instruction["instruction"] != "COMMENT":
            assert result, "an instruction before the first FROM"
            result[-1].append(instruction)
    return result


def values_of(stage: list[dict[str, Any]], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def test_multi_stage_on_slim_python() -> None:
    builder, final = stages()
    assert values_of(builder, "FROM") == ["python:3.12-slim AS builder"]
    assert values_of(final, "FROM") == ["python:3.12-slim"]
    assert any("pip install ." in run for run in values_of(builder, "RUN"))
    assert not any("pip install" in run for run in values_of(final, "RUN"))  # no build tools in the final image
    assert "--from=builder /opt/kambda /opt/kambda" in values_of(final, "COPY")
    (env,) = values_of(final, "ENV")
    assert "PATH=/opt/kambda/bin:$PATH" in env


def test_runs_as_the_non_root_user_the_chart_expects() -> None:
    *_, final = stages()
    (user,) = values_of(final, "USER")
    uid, _, gid = user.partition(":")
    assert uid == "10001" and gid == "10001"
    assert any("--uid 10001" in run for run in values_of(final, "RUN"))
    chart_values = render()
    for obj in workloads(objects_of(chart_values)):
        context = obj["spec"]["template"]["spec"]["securityContext"]
        assert context["runAsUser"] == 10001 and context["runAsNonRoot"] is True


def test_no_entrypoint_hides_the_commands() -> None:
    assert all(not values_of(stage, "ENTRYPOINT") for stage in stages())
    *_, final = stages()
    (cmd,) = values_of(final, "CMD")
    assert cmd == '["kambda-gateway"]'


def test_exposed_ports_are_the_ones_the_chart_uses() -> None:
    *_, final = stages()
    (exposed,) = values_of(final, "EXPOSE")
    ports = {port["containerPort"] for obj in workloads(objects_of(render()))
             for container in obj["spec"]["template"]["spec"]["containers"]
             if container["image"].startswith("ghcr.io/kambda/kambda:") for port in container["ports"]}
    assert {int(p) for p in exposed.split()} == ports


def test_the_image_state_dir_is_writable_in_every_pod() -> None:
    """The chart's root filesystems are read-only: KAMBDA_STATE_DIR must be a mounted volume."""
    *_, final = stages()
    (env,) = values_of(final, "ENV")
    (state_dir,) = re.findall(r"KAMBDA_STATE_DIR=(\S+)", env)
    objs = objects_of(render())
    for obj in workloads(objs):
        for container in obj["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith("ghcr.io/kambda/kambda:"):
                assert state_dir in {m["mountPath"] for m in container["volumeMounts"]}, container["name"]
                assert {"name": "KAMBDA_STATE_DIR", "value": state_dir} in container["env"]


def kambda_commands() -> set[str]:
    """Every command a container running kambda's image is started with, over all chart variants."""
    commands = set()
    for values in VARIANTS.values():
        for obj in workloads(objects_of(render(values))):
            for container in obj["spec"]["template"]["spec"]["containers"]:
                if container["image"].startswith("ghcr.io/kambda/kambda:"):
                    assert "command" in container, container["name"]
                    commands.add(container["command"][0])
    return commands


def test_every_command_the_chart_runs_is_a_console_script() -> None:
    commands = kambda_commands()
    assert commands == {"kambda-gateway", "kambda-controller", "kambda-worker"}
    # Function and pool pods run the invoker; the controller starts them with this script.
    for command in commands | {"kambda-invoker"}:
        assert command in SCRIPTS, command
        module, _, attr = SCRIPTS[command].partition(":")
        assert callable(getattr(importlib.import_module(module), attr))


def test_build_context_holds_every_package() -> None:
    builder, _ = stages()
    copied = {part.rstrip("/") for value in values_of(builder, "COPY") for part in value.split()[:-1]}
    packages = {include.rstrip("*") for include in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied
    assert {"pyproject.toml", PYPROJECT["project"]["readme"]} <= copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not ignored(source), f"{source} is copied but .dockerignore leaves it out"
    for left_out in (".git", "tests", "bench", ".cache", "kambda/__pycache__/x.pyc"):
        assert ignored(left_out), left_out


def ignored(path: str) -> bool:
    """.dockerignore semantics: the last pattern that matches the path or one of its parents wins."""
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    verdict = False
    for rule in (r for r in rules if r and not r.startswith("#")):
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if hit:
            verdict = not negate
    return verdict


@pytest.mark.parametrize("package", ["kambda", "gateway", "controller", "worker", "invoker"])
def test_pip_install_keeps_every_data_file(package: str) -> None:
    """A non-Python file in a package reaches the image only if package-data names it."""
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["*"]
    for path in (ROOT / package).rglob("*"):
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
            assert any(fnmatch.fnmatch(path.name, p) for p in patterns), f"{path.relative_to(ROOT)} not installed"
