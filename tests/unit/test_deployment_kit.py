"""The deployment kit, checked without a container engine: the compose file against the Compose
specification's schema and against the project (commands, settings), the Dockerfile against the
Makefile, and `.env.example` against the Settings model.

Regenerate `.env.example` after adding a setting: `.venv/bin/python -m tests.unit.test_deployment_kit`.
"""

from __future__ import annotations

import copy
import re
import shlex
from enum import Enum
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import typer.main
import yaml
from compose_pydantic import ComposeSpecification

from apps.cli.main import app as cli_app
from apps.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.staging.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
# Services that run DT-RAG's image (the others are PostgreSQL and Redis, configured by their images).
DTRAG_SERVICES = {"api", "worker"}


def _env_value(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_env_example() -> str:
    """Every setting with its default, in the model's order; unset ones (None) commented out."""
    lines = ["# Every DT-RAG setting with its default (apps/core/config.py); generated from the Settings model",
             "# by `.venv/bin/python -m tests.unit.test_deployment_kit`. Copy to .env and change what you need.", ""]
    for name, field in Settings.model_fields.items():
        if field.description:
            lines.append(f"# {field.description}")
        default = field.get_default(call_default_factory=True)
        lines.append(f"# {name.upper()}=" if default is None else f"{name.upper()}={_env_value(default)}")
    return "\n".join(lines) + "\n"


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema_rs.validator_for(ComposeSpecification.model_json_schema())
    return [e.message for e in validator.iter_errors(document)]


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}`."""
    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if name in env:
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg
    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def _cli_command_exists(argv: list[str]) -> bool:
    """`dtrag a b ...`: walk the real typer app's command groups down to a command."""
    group = typer.main.get_command(cli_app)
    for word in argv:
        commands = getattr(group, "commands", None)
        if commands is None:
            return True  # reached a command; the rest are its arguments
        if word not in commands:
            return False
        group = commands[word]
    return not hasattr(group, "commands")


def test_env_example_lists_every_setting_with_its_default() -> None:
    assert ENV_EXAMPLE.read_text() == render_env_example()
    names = {line.lstrip("# ").split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line
             and re.match(r"#? ?[A-Z0-9_]+=", line)}
    assert names == {n.upper() for n in Settings.model_fields}


class _FileOnlySettings(Settings):
    """Settings read from an env file and nothing else (the test process's environment has its own)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):  # type: ignore[no-untyped-def, override]
        return init_settings, dotenv_settings


def test_env_example_copied_to_env_gives_the_defaults(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    from_file = _FileOnlySettings(_env_file=str(env_file))  # type: ignore[call-arg]
    assert from_file.model_dump() == _FileOnlySettings(_env_file=None).model_dump()  # type: ignore[call-arg]
    env_file.write_text(ENV_EXAMPLE.read_text().replace("\nRRF_K=60\n", "\nRRF_K=61\n"))
    assert _FileOnlySettings(_env_file=str(env_file)).rrf_k == 61  # type: ignore[call-arg]  (the file is read)


def test_compose_file_matches_the_compose_specification() -> None:
    document = _compose()
    assert _schema_errors(document) == []
    broken = copy.deepcopy(document)
    broken["services"]["api"]["healthcheck"]["tset"] = broken["services"]["api"]["healthcheck"].pop("test")
    assert _schema_errors(broken), "the schema must refuse an unknown key"


def test_compose_services_cover_the_staging_stack() -> None:
    services = _compose()["services"]
    assert set(services) == {"api", "worker", "postgres", "redis"}
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert set(_compose()["volumes"]) == {"pgdata", "redisdata"}
    for name in ("api", "postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    api_command = services["api"]["command"]
    assert api_command[api_command.index("--workers") + 1] == "${API_WORKERS:-2}"
    assert all(dep["condition"] == "service_healthy" for dep in services["api"]["depends_on"].values())


@pytest.mark.parametrize("service", sorted(DTRAG_SERVICES))
def test_every_dtrag_service_runs_a_real_command(service: str) -> None:
    command = _compose()["services"][service]["command"]
    assert command[0] == "dtrag"
    assert _cli_command_exists(command[1:]), f"`{' '.join(command)}` is not a dtrag command"


def test_every_env_var_the_compose_file_sets_is_a_real_setting() -> None:
    services = _compose()["services"]
    required = {"SECRET_KEY": "staging-secret-key-0123456789", "POSTGRES_PASSWORD": "pw"}
    for service in DTRAG_SERVICES:
        environment = services[service]["environment"]
        unknown = {k for k in environment if k.lower() not in Settings.model_fields}
        assert unknown == set(), f"{service}: {unknown} are not settings"
        values = {k.lower(): _interpolate(str(v), required) for k, v in environment.items()}
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        assert settings.backend == "postgresql" and settings.environment.value == "staging"
    with pytest.raises(KeyError, match="SECRET_KEY"):
        _interpolate(services["api"]["environment"]["SECRET_KEY"], {})


def _dockerfile_runs() -> list[str]:
    """The Dockerfile's RUN commands, one per `&&` step, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    steps = []
    for line in text.splitlines():
        if line.startswith("RUN "):
            steps += [" ".join(step.split()) for step in line[4:].split("&&")]
    return steps


def _makefile_install_commands() -> list[str]:
    """The recipes of the venv and install targets, with the Makefile's variables expanded."""
    text = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+) \??:?= (.+)$", text, re.MULTILINE))
    recipes = re.findall(r"^\$\((?:BIN\)/python|STAMP\)):[^\n]*\n((?:\t[^\n]*\n)+)", text, re.MULTILINE)
    commands = [line.strip() for block in recipes for line in block.splitlines()]

    def expand(command: str) -> str:
        for _ in range(3):
            command = re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], command)
        return command

    return [expand(c) for c in commands if not c.startswith("touch")]


def test_dockerfile_installs_with_the_makefiles_commands() -> None:
    make = _makefile_install_commands()
    assert any("-r requirements.txt" in c for c in make) and any("--no-deps -e ." in c for c in make)
    runs = _dockerfile_runs()
    missing = [c for c in make if c not in runs]
    assert missing == [], f"the Dockerfile does not run {missing}"


def test_dockerfile_is_multi_stage_non_root_with_a_health_check() -> None:
    text = DOCKERFILE.read_text()
    assert len(re.findall(r"^FROM .+ AS \w+$", text, re.MULTILINE)) >= 2
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    healthcheck = re.search(r"^HEALTHCHECK .*$", text.replace("\\\n", " "), re.MULTILINE)
    assert healthcheck and "/health" in healthcheck.group(0)
    cmd = re.search(r"^CMD (\[.+\])$", text, re.MULTILINE)
    assert cmd
    argv = yaml.safe_load(cmd.group(1))
    assert argv[0] == "dtrag" and _cli_command_exists(argv[1:])
    assert shlex.join(argv).startswith("dtrag serve --host 0.0.0.0")


if __name__ == "__main__":
    ENV_EXAMPLE.write_text(render_env_example())
    print(f"wrote {ENV_EXAMPLE}")
