"""The image without a Docker daemon: the Dockerfile's build stage is replayed here (its COPY lines into a temporary
/src, its RUN lines as they are, /opt/ray-history mapped to a temporary prefix), and the final stage's entry point
runs from that prefix alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .manifests import REPO, dockerfile, exec_form, image_entrypoint, shell_words

# Paths of the image, and where this test puts them.
IMAGE_PATHS = ("/opt/ray-history", "/src")
# The image's pip settings that only keep the layer small; here pip may use its cache (the install is the same).
LAYER_ONLY_ENV = {"PIP_NO_CACHE_DIR"}


def _map(text: str, mapping: dict[str, Path]) -> str:
    for image_path, local in mapping.items():
        text = re.sub(rf"{re.escape(image_path)}(?=/|\b|$)", str(local), text)
    return text


def _env_assignments(rest: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shell_words(rest))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build stage, replayed: the prefix it leaves (the final stage copies that alone)."""
    root = tmp_path_factory.mktemp("image")
    mapping = {"/opt/ray-history": root / "opt" / "ray-history", "/src": root / "src"}
    global_args, stages = dockerfile()
    build = next(stage for stage in stages if stage.name == "build")
    env = {**os.environ, **global_args, "PYTHON": str(Path(sys.base_prefix) / "bin" / "python3")}
    env.pop("PIP_REQUIRE_VIRTUALENV", None)
    workdir = Path("/")
    for instruction, rest in build.instructions:
        if instruction == "ARG":
            key, _, value = rest.partition("=")
            env[key] = value.strip('"')
        elif instruction == "ENV":
            env.update({key: value for key, value in _env_assignments(rest).items() if key not in LAYER_ONLY_ENV})
        elif instruction == "WORKDIR":
            workdir = Path(_map(rest, mapping))
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, target = shell_words(rest)
            destination = Path(_map(target, mapping)) if target.startswith("/") else workdir / target
            for source in sources:
                path = REPO / source
                if path.is_dir():
                    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")  # what .dockerignore leaves out
                    into = destination if target.endswith("/") else destination / path.name
                    shutil.copytree(path, into, ignore=skip, dirs_exist_ok=True)
                else:
                    target_file = destination / path.name if target.endswith("/") or target == "./" else destination
                    target_file.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target_file)
        elif instruction == "RUN":
            done = subprocess.run(["sh", "-c", _map(rest, mapping)], cwd=workdir, env=env, capture_output=True,
                                  text=True, timeout=900, check=False)  # fmt: skip
            assert done.returncode == 0, f"RUN {rest}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        else:
            pytest.fail(f"the test does not know how to replay {instruction} of the build stage")
    return mapping["/opt/ray-history"]


def test_the_build_copies_exactly_the_packages_the_wheel_is_built_from() -> None:
    _, stages = dockerfile()
    build = next(stage for stage in stages if stage.name == "build")
    copied = {shell_words(rest)[0].rstrip("/") for instruction, rest in build.instructions if instruction == "COPY"}
    includes = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in includes}
    assert packages <= copied, f"packages the image would miss: {packages - copied}"
    # .dockerignore must not hide what is copied.
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}  # fmt: skip
    assert not ignored & copied


def test_the_final_stage_runs_as_a_non_root_user_from_the_copied_prefix_alone() -> None:
    _, stages = dockerfile()
    final = stages[-1]
    assert final.name is None and final.base == stages[0].base  # the same slim Python base
    runs = [rest for instruction, rest in final.instructions if instruction == "RUN"]
    # The one RUN of the final stage adds the user (not replayed here: it would change this machine's users).
    assert len(runs) == 1 and runs[0].startswith("useradd --uid 10001 ")
    assert dict(final.instructions)["USER"] == "10001:0"
    copies = [rest for instruction, rest in final.instructions if instruction == "COPY"]
    assert copies == ["--from=build /opt/ray-history /opt/ray-history"]
    assert exec_form(dict(final.instructions)["ENTRYPOINT"]) == ["ray-history"]


def test_the_installed_prefix_runs_every_command_the_manifests_use(installed: Path) -> None:
    _, stages = dockerfile()
    path_value = _env_assignments(dict(stages[-1].instructions)["ENV"])["PATH"]
    env = {"PATH": path_value.replace("/opt/ray-history", str(installed)).replace("$PATH", "/usr/bin:/bin"),
           "HOME": str(installed.parent)}  # fmt: skip
    entrypoint, cmd = image_entrypoint()
    executable = shutil.which(entrypoint[0], path=env["PATH"])
    assert executable == str(installed / "bin" / "ray-history"), "the entry point resolves to the prefix"
    for args in (cmd, ["collect", "--help"], ["serve", "--help"]):
        done = subprocess.run([executable, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
    # Not an editable install: the code and the pages' templates live in the prefix, not in this checkout.
    probe = "import ui, historyserver, pathlib; print(pathlib.Path(ui.__file__).parent, historyserver.__file__)"
    done = subprocess.run([str(installed / "bin" / "python"), "-c", probe], env=env, cwd=installed,
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    ui_dir, server_file = done.stdout.split()
    assert ui_dir.startswith(str(installed)) and server_file.startswith(str(installed))
    assert (Path(ui_dir) / "templates" / "base.html").exists()
