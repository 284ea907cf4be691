"""The deployment artefacts are checked as far as this machine allows, and agree with the code.

No container engine runs here: the Dockerfile is linted (hadolint), not built, and the
compose file is validated against the Compose Specification's schema (check-jsonschema's
vendored copy), not started.  The systemd units pass ``systemd-analyze verify``.  Then
every role the CLI offers has a compose service and a unit, and every variable they set
is one TaskForge reads.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import PROJECT_ROOT, Settings
from app.roles import COMMON_SETTINGS, ROLES
from grpc_service.server import GRACE_SECONDS

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
COMPOSE = PROJECT_ROOT / "deploy" / "compose.yaml"
UNITS = PROJECT_ROOT / "deploy" / "systemd"
ENV_EXAMPLE = UNITS / "taskforge.env.example"
COMPOSE_ENV_EXAMPLE = PROJECT_ROOT / "deploy" / ".env.example"
DEPLOYMENT_DOC = PROJECT_ROOT / "docs" / "deployment.md"
SOURCES = [
    *(PROJECT_ROOT / "app").rglob("*.py"),
    *(PROJECT_ROOT / "tasks").rglob("*.py"),
    *(PROJECT_ROOT / "grpc_service").glob("*.py"),
    PROJECT_ROOT / "celeryconfig.py",
]
BIN = Path(sys.executable).parent
SYSTEMD_ANALYZE = Path("/usr/bin/systemd-analyze")

# Variables the image sets for Python and pip themselves, not for TaskForge.
PYTHON_VARIABLES = {
    "PATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}
# How the code reads a variable: _env*("NAME"…), os.environ.get("NAME"…), environ["NAME"].
_READS = re.compile(
    r"""(?:_env(?:_int|_bool|_list)?\(|environ(?:\.get\(|\[))\s*"([A-Z][A-Z0-9_]+)\""""
)


def _tool(name: str) -> str:
    path = BIN / name
    assert path.is_file(), f"{name} is missing: pip install -e '.[dev]'"
    return str(path)


def _run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def variables_read_by_the_code() -> set[str]:
    """Every environment variable TaskForge's own code reads."""
    return {name for path in SOURCES for name in _READS.findall(path.read_text())}


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # resolves << merges
    return document


def _taskforge_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return {name: s for name, s in services.items() if str(s.get("image", "")).startswith("$")}


def _unit(path: Path) -> dict[str, list[str]]:
    """A unit file's directives, each with every value it is given."""
    directives: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            directives.setdefault(key.strip(), []).append(value.strip())
    return directives


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)?", duration)
    assert match, f"not a duration: {duration}"
    return float(match[1]) * (60 if match[2] == "m" else 1)


# --- the linters and validators -------------------------------------------------------


def test_the_dockerfile_passes_hadolint() -> None:
    done = _run(_tool("hadolint"), str(DOCKERFILE))
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_hadolint_fails_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python\nRUN apt-get install -y curl\nUSER root\n")
    done = _run(_tool("hadolint"), "--no-color", str(careless))
    assert done.returncode == 1
    assert "DL3006" in done.stdout  # an untagged base image


def test_the_image_runs_as_a_numeric_non_root_user_with_the_role_as_command() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["taskforge"]' in text
    assert text.count("FROM ") >= 2  # multi-stage: the build stage stays behind
    # The runtime dependencies only, never the dev extras.
    assert re.findall(r"pip install (.*)", text) == ["--no-cache-dir --editable ."]
    assert (PROJECT_ROOT / ".dockerignore").read_text().startswith("#")


def _validate_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path))


def test_the_compose_file_follows_the_compose_specification() -> None:
    done = _validate_compose(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_fails_a_misspelt_compose_key(tmp_path: Path) -> None:
    misspelt = tmp_path / "compose.yaml"
    misspelt.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periods:"))
    done = _validate_compose(misspelt)
    assert done.returncode == 1
    assert "stop_grace_periods" in done.stdout


def _verify_units(directory: Path) -> subprocess.CompletedProcess[str]:
    if not SYSTEMD_ANALYZE.is_file():
        reason = f"{SYSTEMD_ANALYZE} is missing (Debian: apt-get install systemd)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    names = [
        path.name.replace("@.service", "@1.service") for path in sorted(directory.glob("*.service"))
    ]
    return _run(str(SYSTEMD_ANALYZE), "verify", "--man=no", *names, cwd=directory)


def _units_for_this_machine(tmp_path: Path) -> Path:
    """Copy the units, pointing ExecStart at this venv's taskforge (verify needs it to exist)."""
    directory = tmp_path / "units"
    directory.mkdir()
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace("/opt/taskforge/bin/taskforge", _tool("taskforge"))
        (directory / unit.name).write_text(text)
    return directory


def test_the_systemd_units_verify(tmp_path: Path) -> None:
    done = _verify_units(_units_for_this_machine(tmp_path))
    # verify exits 0 on unknown keys and bad values, but names them: no output at all.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_systemd_verify_reports_a_bad_directive(tmp_path: Path) -> None:
    directory = _units_for_this_machine(tmp_path)
    worker = directory / "taskforge-worker@.service"
    worker.write_text(worker.read_text().replace("KillMode=mixed", "KillMode=gently"))
    done = _verify_units(directory)
    assert "Failed to parse kill mode specification" in done.stdout + done.stderr


# --- agreement with the code ------------------------------------------------------------


def test_every_role_has_a_compose_service_and_a_systemd_unit() -> None:
    commands = {service["command"][0] for service in _taskforge_services().values()}
    assert commands == set(ROLES)
    for role in ROLES:
        unit = UNITS / (
            "taskforge-worker@.service" if role == "worker" else f"taskforge-{role}.service"
        )
        assert _unit(unit)["ExecStart"] == [f"/opt/taskforge/bin/taskforge {role}"], unit.name


def _set_by_the_artefacts() -> dict[str, set[str]]:
    """Where each TaskForge-side variable is set: compose, env examples, units, image."""
    found: dict[str, set[str]] = {}
    for name, service in _taskforge_services().items():
        for variable in service.get("environment", {}):
            found.setdefault(variable, set()).add(f"compose {name}")
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"#?([A-Z][A-Z0-9_]+)=", line)
        if match:
            found.setdefault(match[1], set()).add(ENV_EXAMPLE.name)
    for unit in UNITS.glob("*.service"):
        for assignment in _unit(unit).get("Environment", []):
            found.setdefault(assignment.partition("=")[0], set()).add(unit.name)
    for variable in re.findall(r"^\s*(?:ENV\s+)?([A-Z][A-Z0-9_]+)=", DOCKERFILE.read_text(), re.M):
        found.setdefault(variable, set()).add("Dockerfile")
    return found


def test_every_variable_the_artefacts_set_is_one_taskforge_reads() -> None:
    unknown = {
        variable: sorted(where)
        for variable, where in _set_by_the_artefacts().items()
        if variable not in variables_read_by_the_code() | PYTHON_VARIABLES
    }
    assert unknown == {}


def test_the_variable_check_sees_what_the_code_reads() -> None:
    read = variables_read_by_the_code()
    assert {"DATABASE_URL", "TASKFORGE_VAR_DIR", "TASKFORGE_WORKER_TYPE"} <= read
    assert "TASKFORGE_NOT_A_SETTING" not in read


def test_every_role_setting_is_read_by_the_code_and_documented() -> None:
    read = variables_read_by_the_code()
    documented = DEPLOYMENT_DOC.read_text()
    for name in {*COMMON_SETTINGS, *(n for role in ROLES.values() for n in role.settings)}:
        assert name in read, name
        assert f"`{name}`" in documented, name


def test_every_role_and_its_health_check_is_documented() -> None:
    documented = DEPLOYMENT_DOC.read_text()
    for role in ROLES:
        assert f"`taskforge {role}`" in documented, role


def test_stop_timeouts_leave_room_for_each_roles_own_grace() -> None:
    defaults = Settings()
    services = _taskforge_services()
    worker = services["worker-1"]
    soft = float(worker["environment"]["TASKFORGE_WORKER_SOFT_SHUTDOWN_SECONDS"])
    assert _seconds(worker["stop_grace_period"]) > soft
    api = services["api-1"]
    assert _seconds(api["stop_grace_period"]) > float(
        api["environment"]["TASKFORGE_HTTP_GRACEFUL_SECONDS"]
    )
    assert _seconds(services["grpc"]["stop_grace_period"]) > GRACE_SECONDS
    timeouts = {
        unit.name: float(_unit(unit)["TimeoutStopSec"][0])
        for unit in UNITS.glob("*.service")
        if "TimeoutStopSec" in _unit(unit)
    }
    assert timeouts["taskforge-worker@.service"] > defaults.worker_soft_shutdown_seconds
    assert timeouts["taskforge-api.service"] > defaults.http_graceful_seconds
    assert timeouts["taskforge-grpc.service"] > GRACE_SECONDS


def test_compose_dependencies_exist_and_wait_for_health_checks() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on a missing {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
    for name, service in _taskforge_services().items():
        role = service["command"][0]
        if role == "migrate":
            assert service["restart"] == "no"
            continue
        assert service["healthcheck"]["test"][:4] == ["CMD", "taskforge", "health", role], name


def test_the_units_run_as_the_taskforge_user_and_stop_the_main_process_first() -> None:
    for unit in UNITS.glob("*.service"):
        directives = _unit(unit)
        assert directives["User"] == ["taskforge"], unit.name
        assert directives["EnvironmentFile"] == ["/etc/taskforge/taskforge.env"], unit.name
        if directives["Type"] != ["oneshot"]:
            assert directives["KillMode"] == ["mixed"], unit.name
            assert directives["Restart"] == ["on-failure"], unit.name


def test_the_compose_secrets_example_names_every_variable_compose_requires() -> None:
    required = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+):\?", COMPOSE.read_text()))
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", COMPOSE.read_text()))
    example = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", COMPOSE_ENV_EXAMPLE.read_text(), re.M))
    assert required <= example <= interpolated
