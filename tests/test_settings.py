"""Configuration: precedence, validation, production rules, the documented example file."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jingtan_api.settings import ConfigurationError, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("JINGTAN_") and not key.startswith("JINGTAN_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults_without_file_or_environment():
    s = load_settings()
    assert s.mode == "development" and s.database_url == "sqlite+aiosqlite:///./var/jingtan.db"
    assert s.graphiql_enabled and s.introspection_enabled


def test_toml_file_then_environment_override(tmp_path, monkeypatch):
    (tmp_path / "jingtan.toml").write_text('database_url = "sqlite+aiosqlite:///./other.db"\n[auth]\naccess_token_ttl_seconds = 600\n')
    s = load_settings()
    assert s.database_url.endswith("other.db") and s.auth.access_token_ttl_seconds == 600
    monkeypatch.setenv("JINGTAN_AUTH__ACCESS_TOKEN_TTL_SECONDS", "300")
    monkeypatch.setenv("JINGTAN_DATABASE_URL", "postgresql+asyncpg://u@h/db")
    s = load_settings()
    assert s.auth.access_token_ttl_seconds == 300 and s.database_url == "postgresql+asyncpg://u@h/db"


def test_jingtan_config_names_the_file(tmp_path, monkeypatch):
    config = tmp_path / "conf" / "prod.toml"
    config.parent.mkdir()
    config.write_text('[points]\nlot_expiry_days = 180\n')
    monkeypatch.setenv("JINGTAN_CONFIG", str(config))
    assert load_settings().points.lot_expiry_days == 180
    monkeypatch.setenv("JINGTAN_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigurationError, match="not a file"):
        load_settings()


def test_invalid_values_give_one_readable_line(monkeypatch):
    monkeypatch.setenv("JINGTAN_AUTH__ACCESS_TOKEN_TTL_SECONDS", "5")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "auth.access_token_ttl_seconds" in str(info.value) and "\n" not in str(info.value)


def test_unknown_keys_are_refused(tmp_path):
    (tmp_path / "jingtan.toml").write_text("[auth]\naccess_ttl = 5\n")
    with pytest.raises(ConfigurationError, match="access_ttl"):
        load_settings()


def test_production_refuses_the_default_secret(monkeypatch):
    monkeypatch.setenv("JINGTAN_MODE", "production")
    with pytest.raises(ConfigurationError, match="JINGTAN_SECRET_KEY"):
        load_settings()
    monkeypatch.setenv("JINGTAN_SECRET_KEY", "short")
    with pytest.raises(ConfigurationError):
        load_settings()
    monkeypatch.setenv("JINGTAN_SECRET_KEY", "x" * 48)
    s = load_settings()
    assert not s.graphiql_enabled and not s.introspection_enabled


def test_cli_reports_configuration_errors_in_one_line(monkeypatch, capsys):
    from jingtan_api.cli import main

    monkeypatch.setenv("JINGTAN_MODE", "production")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jingtan: invalid configuration") and err.count("\n") == 1


def test_example_file_documents_every_key_with_its_default():
    from jingtan_api.cli import example_config_text

    text = (ROOT / "jingtan.example.toml").read_text(encoding="utf-8")
    assert text == example_config_text(), "jingtan.example.toml is stale: run `jingtan config example`"
    import tomllib

    parsed = tomllib.loads(text)
    defaults = load_settings()
    for section in ("auth", "points", "graphql", "server", "log"):
        model = getattr(defaults, section)
        for name, field in type(model).model_fields.items():
            key = field.alias or name
            value = getattr(model, name)
            if value is None:
                assert f"# {key} =" in text
            else:
                assert parsed[section][key] == value, f"{section}.{key}"


def test_example_file_works_as_a_configuration(tmp_path):
    """Copied as jingtan.toml, the example validates, including every plugin's table."""
    from jingtan_api.plugins.manager import load_plugins

    (tmp_path / "jingtan.toml").write_text((ROOT / "jingtan.example.toml").read_text(encoding="utf-8"))
    settings = load_settings()
    host = load_plugins(settings)
    assert sorted(host.action_types) == ["energy_saving", "recycling", "transit"]
    assert settings.plugins.settings_for("transit")["review_above_grams"] == 500


# --- configuration mistakes through the command line (a real process: no traceback, one line) ------------


def _jingtan(tmp_path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("jingtan")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "jingtan_api.cli"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JINGTAN_") or k.startswith("JINGTAN_TEST_")}
    return subprocess.run(
        [*command, *argv], cwd=tmp_path, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=120
    )


def _one_line(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jingtan: invalid configuration: ")
    return lines[0]


@pytest.mark.parametrize("command", [["migrate"], ["serve", "--port", "1"]])
def test_toml_syntax_error_names_the_file_and_position(tmp_path, command):
    (tmp_path / "jingtan.toml").write_text('database_url = "sqlite+aiosqlite:///./x.db"\n[auth\naccess_token_ttl_seconds = 600\n')
    line = _one_line(_jingtan(tmp_path, *command))
    assert "jingtan.toml: TOML syntax error" in line and "line 2" in line, line
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "var").exists()  # nothing was created


def test_toml_syntax_error_in_the_file_named_by_jingtan_config(tmp_path):
    (tmp_path / "prod.toml").write_text("[points]\nlot_expiry_days = = 3\n")
    line = _one_line(_jingtan(tmp_path, "migrate", env={"JINGTAN_CONFIG": str(tmp_path / "prod.toml")}))
    assert f"{tmp_path / 'prod.toml'}: TOML syntax error" in line, line


@pytest.mark.parametrize("command", [["migrate"], ["serve", "--port", "1"]])
def test_malformed_environment_value_names_the_variable(tmp_path, command):
    env = {"JINGTAN_PLUGINS__ENABLED": "transit,recycling", "JINGTAN_PLUGINS__TIMEOUT_SECONDS": "3"}
    line = _one_line(_jingtan(tmp_path, *command, env=env))
    assert "JINGTAN_PLUGINS__ENABLED: not valid JSON" in line and "TIMEOUT_SECONDS" not in line, line
    assert not (tmp_path / "var").exists()


def test_the_json_form_of_the_environment_value_works(monkeypatch):
    monkeypatch.setenv("JINGTAN_PLUGINS__ENABLED", '["transit", "recycling"]')
    assert load_settings().plugins.enabled == ["transit", "recycling"]


@pytest.mark.parametrize(
    "toml, expected",
    [
        ("[plugins.trnsit]\ndaily_cap_grams = 5\n", "jingtan: [plugins.trnsit]: no enabled plugin provides an action type 'trnsit'"),
        ('[plugins]\nenabled = ["transit", "transit"]\n', "jingtan: [plugins] enabled lists 'transit' more than once"),
    ],
)
def test_plugin_configuration_mistakes_stop_serve_with_one_line(tmp_path, toml, expected):
    (tmp_path / "jingtan.toml").write_text(toml)
    result = _jingtan(tmp_path, "serve", "--port", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(expected), result.stderr
