"""Settings load from YAML and HUIYIN_* variables and fail clearly on mistakes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from config import ConfigError, Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_file_and_environment_layer(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 9000\nthreads: 1\n")
    settings = load_settings(path, environ={"HUIYIN_PORT": "9100", "HUIYIN_PHRASES": "a.yaml,b.yaml"})
    assert settings.port == 9100  # environment wins over the file
    assert settings.threads == 1
    assert settings.phrases == (Path("a.yaml"), Path("b.yaml"))
    assert settings.host == "127.0.0.1"


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "prot: 9000\n")
    with pytest.raises(ConfigError, match=r"settings.yaml: unknown setting 'prot'"):
        load_settings(path, environ={})


def test_wrong_type_names_key(tmp_path: Path) -> None:
    path = write(tmp_path, "port: eighty\n")
    with pytest.raises(ConfigError, match=r"setting 'port' must be int"):
        load_settings(path, environ={})


def test_bad_environment_value_names_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"HUIYIN_THREADS"):
        load_settings(write(tmp_path, ""), environ={"HUIYIN_THREADS": "many"})


def test_out_of_range_port(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'port' must be between"):
        load_settings(write(tmp_path, "port: 70000\n"), environ={})


def test_signed_urls_need_a_bucket_of_at_least_a_second(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'url_signing_bucket' must be at least 1"):
        load_settings(write(tmp_path, "url_signing_bucket: 0\n"), environ={})
    assert load_settings(write(tmp_path, ""), environ={}).url_signing_bucket == 3600


def test_optional_setting_cleared_by_empty_env(tmp_path: Path) -> None:
    path = write(tmp_path, "admin_token: secret\n")
    assert load_settings(path, environ={}).admin_token == "secret"
    assert load_settings(path, environ={"HUIYIN_ADMIN_TOKEN": ""}).admin_token is None


def test_resolved_threads_defaults_to_all_cores(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "threads: 0\n"), environ={})
    assert settings.resolved_threads() >= 1


def test_shipped_settings_file_is_valid() -> None:
    load_settings(environ={})


def test_huiyin_config_names_the_settings_file(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 9300\n")
    assert load_settings(environ={"HUIYIN_CONFIG": str(path)}).port == 9300


def test_configuration_reference_matches_the_settings() -> None:
    from config.reference import REFERENCE_PATH, render_reference
    from config.settings import setting_fields

    text = render_reference()
    assert REFERENCE_PATH.read_text(encoding="utf-8") == text, (
        "docs/configuration.md is stale: run `huiyin config reference --write`"
    )
    for field in setting_fields():
        assert f"`HUIYIN_{field.name.upper()}`" in text and field.metadata["doc"] in text


def test_unknown_key_suggests_the_closest_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'cahce_max_bytes'; "
                                          r"did you mean 'cache_max_bytes'\?"):
        load_settings(write(tmp_path, "cahce_max_bytes: 1\n"), environ={})


def test_a_removed_setting_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="huiyin.config")
    path = write(tmp_path, "port: 9000\nfast_hits: false\n")
    assert load_settings(path, environ={}).port == 9000
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        f"{path}: setting 'fast_hits' no longer exists and is ignored (")
    caplog.clear()
    load_settings(write(tmp_path, ""), environ={"HUIYIN_FAST_HITS": "true"})
    (record,) = caplog.records
    assert "environment variable HUIYIN_FAST_HITS: setting 'fast_hits' no longer exists" in (
        record.getMessage())
    assert not hasattr(Settings(), "fast_hits")


def test_a_key_given_twice_in_the_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"settings.yaml:2: not valid YAML: 'port' is given twice"):
        load_settings(write(tmp_path, "port: 9000\nport: 9001\n"), environ={})


def test_an_unknown_huiyin_variable_stops_startup(tmp_path: Path) -> None:
    empty = write(tmp_path, "")
    with pytest.raises(ConfigError, match=r"^environment variable HUIYIN_CAHCE_MAX_BYTES is not a "
                                          r"setting; did you mean HUIYIN_CACHE_MAX_BYTES\?$"):
        load_settings(empty, environ={"HUIYIN_CAHCE_MAX_BYTES": "1"})
    with pytest.raises(ConfigError, match=r"HUIYIN_WIBBLE is not a setting; `huiyin config reference`"):
        load_settings(empty, environ={"HUIYIN_WIBBLE": "1"})
    # Other variables are none of our business, and HUIYIN_CONFIG names the file.
    settings = load_settings(environ={"HUIYIN_CONFIG": str(empty), "HUIYINX": "1", "PATH": "/bin"})
    assert settings.port == 8080


def test_openai_voices_is_a_mapping_in_yaml_and_name_value_pairs_in_the_env(tmp_path: Path) -> None:
    path = write(tmp_path, "openai_voices:\n  alloy: baker\n  nova: zhitian_emo\n")
    assert dict(load_settings(path, environ={}).openai_voices) == {"alloy": "baker", "nova": "zhitian_emo"}
    from_env = load_settings(path, environ={"HUIYIN_OPENAI_VOICES": " alloy = x, echo=y ,"})
    assert dict(from_env.openai_voices) == {"alloy": "x", "echo": "y"}  # the env wins whole
    assert dict(load_settings(path, environ={"HUIYIN_OPENAI_VOICES": ""}).openai_voices) == {}
    assert dict(load_settings(write(tmp_path, "openai_voices: alloy=baker\n"),
                              environ={}).openai_voices) == {"alloy": "baker"}
    assert dict(load_settings(write(tmp_path, ""), environ={}).openai_voices) == {}


def test_openai_voices_is_read_only_and_also_parsed_when_settings_are_built_directly() -> None:
    settings = Settings(openai_voices="nova=baker")  # type: ignore[arg-type]
    assert dict(settings.openai_voices) == {"nova": "baker"}
    with pytest.raises(TypeError):
        settings.openai_voices["alloy"] = "baker"  # type: ignore[index]
    assert Settings(openai_voices={"nova": "baker"}) == settings
    with pytest.raises(ConfigError, match=r"^Settings: setting 'openai_voices': 'a' is mapped twice"):
        Settings(openai_voices="a=b,a=c")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env", "yaml_text", "message"),
    [
        ("alloy=baker,alloy=x", None,
         r"HUIYIN_OPENAI_VOICES: setting 'openai_voices': 'alloy' is mapped twice"),
        ("alloy", None, r"'alloy' must be name=value"),
        ("=baker", None, r"every entry needs a name and a value"),
        ("alloy=", None, r"every entry needs a name and a value"),
        (None, "openai_voices:\n  alloy: baker\n  alloy: x\n",
         r"settings.yaml:3: not valid YAML: 'alloy' is given twice"),
        (None, "openai_voices: [alloy, baker]\n",
         r"settings.yaml: setting 'openai_voices' must be a mapping"),
        (None, "openai_voices:\n  alloy: 1\n", r"names and values must be strings"),
        (None, "openai_voices:\n  alloy: ''\n", r"every entry needs a name and a value"),
    ],
)
def test_bad_openai_voices_are_refused_at_load(
    tmp_path: Path, env: str | None, yaml_text: str | None, message: str
) -> None:
    path = write(tmp_path, yaml_text or "")
    environ = {} if env is None else {"HUIYIN_OPENAI_VOICES": env}
    with pytest.raises(ConfigError, match=message):
        load_settings(path, environ=environ)


def test_the_reference_renders_mappings() -> None:
    from config.reference import render_reference

    row = next(line for line in render_reference().splitlines() if line.startswith("| `openai_voices`"))
    assert "| mapping of string to string | unset | `HUIYIN_OPENAI_VOICES` |" in row


def test_customer_data_settings_are_checked(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), environ={}).store_text == "named"
    for environ, message in (
        ({"HUIYIN_STORE_TEXT": "sometimes"}, r"'store_text' must be always, named or never"),
        ({"HUIYIN_MAX_TTL": "0"}, r"'max_ttl' must be at least 1"),
        ({"HUIYIN_TTS_TTL": "-1"}, r"'tts_ttl' must be 0 or more"),
        ({"HUIYIN_TTS_TTL": "90", "HUIYIN_MAX_TTL": "60"}, r"'tts_ttl' \(90\) is longer than"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_settings(write(tmp_path, ""), environ=environ)
    kept = load_settings(write(tmp_path, ""), environ={"HUIYIN_TTS_TTL": "3600", "HUIYIN_STORE_TEXT": "never"})
    assert (kept.tts_ttl, kept.max_ttl, kept.store_text) == (3600, 2_592_000, "never")
