"""Configuration: every bad case is refused with a message naming the file (or variable) and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gomailpy.config.settings import Settings, load_settings
from gomailpy.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gomailpy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["gomailpy.yaml", "test.yaml"])
def test_shipped_configs_load(name: str) -> None:
    settings = load_settings(REPO / "config" / name, env={})
    assert settings.queues.urls


def test_production_example_needs_its_secret_from_the_environment() -> None:
    path = REPO / "config" / "production.example.yaml"
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert str(caught.value) == (
        f"{path}: providers[1] (sendgrid).api_key: missing secret: SendGrid is enabled,"
        " so set GOMAILPY_PROVIDERS__SENDGRID__API_KEY"
    )
    env = {"GOMAILPY_PROVIDERS__SENDGRID__API_KEY": "SG.0123"}
    settings = load_settings(path, env=env)
    assert settings.providers["sendgrid"].api_key is not None
    assert settings.providers["sendgrid"].api_key.get_secret_value() == "SG.0123"
    assert "SG.0123" not in repr(settings)  # secrets never show in logs or reprs


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        ("pipeline:\n  unhealthy_threshold: 0\n", "pipeline.unhealthy_threshold: must be >= 1"),
        ("pipeline:\n  healthy_threshold: 0\n", "pipeline.healthy_threshold: must be >= 1"),
        (
            "pipeline:\n  healthy_threshold: lots\n",
            "pipeline.healthy_threshold: must be a whole number",
        ),
        ("api:\n  port: 70000\n", "api.port: must be <= 65535"),
        (
            "api:\n  queue_choice: random\n",
            "api.queue_choice: must be one of 'least-depth' or 'round-robin'",
        ),
        ("queues:\n  urls: []\n", "queues.urls: must have at least 1 item(s)"),
        ("queues:\n  wait_time_s: 30\n", "queues.wait_time_s: must be <= 20"),
        (
            "providers:\n  smtp:\n    enabled: maybe\n",
            "providers[0] (smtp).enabled: must be true or false",
        ),
        ("logging:\n  format: xml\n", "logging.format: must be one of 'text' or 'json'"),
        ("pipeline: 3\n", "pipeline: must be a mapping of keys"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, yaml_text: str, problem: str) -> None:
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert caught.value.problems == [f"{path}: {problem}"]


def test_unknown_keys_are_refused_with_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  unhealty_threshold: 2\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}: pipeline.unhealty_threshold: unknown key; known keys here:")
    assert "unhealthy_threshold" in problem


def test_unknown_section(tmp_path: Path) -> None:
    path = write(tmp_path, "pipelines:\n  x: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert caught.value.problems[0].startswith(
        f"{path}: pipelines: unknown key; known keys here: aws,"
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  unhealthy_threshold: 0\n  healthy_threshold: -1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert sorted(caught.value.problems) == [
        f"{path}: pipeline.healthy_threshold: must be >= 1",
        f"{path}: pipeline.unhealthy_threshold: must be >= 1",
    ]


def test_broken_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  healthy_threshold: [1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert str(caught.value).startswith(f"{path}: line 3, column 1: not valid YAML:")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="the top level must be a mapping of sections"):
        load_settings(path, env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "nope.yaml", env={})
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: no such config file"


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), env={})
    assert settings.pipeline.unhealthy_threshold == 2
    assert settings.api.max_body_size_bytes == 204800


def test_secret_in_yaml_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  smtp:\n    password: hunter2\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    message = str(caught.value)
    assert message == (
        f"{path}: providers.smtp.password: secrets are read from the environment only;"
        " remove it from the file and set GOMAILPY_PROVIDERS__SMTP__PASSWORD"
    )
    assert "hunter2" not in message


def test_missing_smtp_password_when_username_is_set(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  smtp:\n    enabled: true\n    username: relay-user\n")
    with pytest.raises(ConfigError, match=r"providers\[0\] \(smtp\).password: missing secret"):
        load_settings(path, env={})
    settings = load_settings(path, env={"GOMAILPY_PROVIDERS__SMTP__PASSWORD": "123456"})
    assert settings.providers["smtp"].password is not None
    # a secret that looks like a number stays the exact string
    assert settings.providers["smtp"].password.get_secret_value() == "123456"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  unhealthy_threshold: 3\nqueues:\n  urls: [a]\n")
    env = {
        "GOMAILPY_PIPELINE__UNHEALTHY_THRESHOLD": "5",
        "GOMAILPY_QUEUES__URLS": "[x, y]",
        "UNRELATED": "1",
    }
    settings = load_settings(path, env=env)
    assert settings.pipeline.unhealthy_threshold == 5
    assert settings.queues.urls == ["x", "y"]


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={"GOMAILPY_PIPELINE__UNHEALTHY_THRESHOLD": "0"})
    assert caught.value.problems == [
        "environment GOMAILPY_PIPELINE__UNHEALTHY_THRESHOLD: pipeline.unhealthy_threshold: must be >= 1"
    ]


def test_send_timeout_must_fit_inside_the_visibility_timeout(tmp_path: Path) -> None:
    path = write(tmp_path, "queues:\n  visibility_timeout_s: 10\npipeline:\n  send_timeout_s: 8\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert caught.value.problems == [
        f"{path}: pipeline.send_timeout_s: must be at most half of"
        " queues.visibility_timeout_s (8 > 10 / 2)"
    ]


def test_environment_lists_read_as_yaml_or_json_and_null_or_nothing_unsets_a_key(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "claim_check:\n  bucket: big-emails\n")
    env = {
        "GOMAILPY_QUEUES__URLS": '["a", "b"]',
        "GOMAILPY_API__CORS_ORIGINS": "[https://example.com]",
        "GOMAILPY_CLAIM_CHECK__BUCKET": "null",
        "GOMAILPY_API__ACCESS_LOG_FILE_PATH": "",
        "GOMAILPY_QUEUES__DLQ_SUFFIX": "123",  # text stays text, even when it looks like a number
    }
    settings = load_settings(path, env=env)
    assert settings.queues.urls == ["a", "b"]
    assert settings.api.cors_origins == ["https://example.com"]
    assert settings.claim_check.bucket is None
    assert settings.api.access_log_file_path is None
    assert settings.queues.dlq_suffix == "123"


def test_a_secret_is_its_exact_text_even_null() -> None:
    env = {"GOMAILPY_AWS__ACCESS_KEY_ID": "null", "GOMAILPY_AWS__SECRET_ACCESS_KEY": "[x]"}
    settings = load_settings(None, env=env)
    assert settings.aws.access_key_id is not None
    assert settings.aws.access_key_id.get_secret_value() == "null"
    assert settings.aws.secret_access_key is not None
    assert settings.aws.secret_access_key.get_secret_value() == "[x]"


@pytest.mark.parametrize(
    ("variable", "problem"),
    [
        (
            "GOMAILPY_PIPELINES__UNHEALTHY_THRESHOLD",
            "pipelines: unknown key; known keys here: aws,",
        ),
        (
            "GOMAILPY_PIPELINE__UNHEALTY_THRESHOLD",
            "pipeline.unhealty_threshold: unknown key; known keys here: min_iteration_duration_s,",
        ),
    ],
)
def test_an_unknown_key_from_the_environment_names_the_variable(
    variable: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={variable: "3"})
    [found] = caught.value.problems
    assert found.startswith(f"environment {variable}: {problem}")


def test_a_whole_section_from_the_environment_names_the_variable() -> None:
    env = {"GOMAILPY_PIPELINE": "{unhealthy_threshold: 0}"}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env=env)
    assert caught.value.problems == [
        "environment GOMAILPY_PIPELINE: pipeline.unhealthy_threshold: must be >= 1"
    ]


def test_settings_built_from_data_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOMAILPY_PIPELINE__UNHEALTHY_THRESHOLD", "7")
    assert Settings.model_validate({}).pipeline.unhealthy_threshold == 2
    assert load_settings(None).pipeline.unhealthy_threshold == 7  # load_settings reads os.environ
