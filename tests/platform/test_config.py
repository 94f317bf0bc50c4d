"""Issue 12 item 6: every setting is checked at start-up; a bad one stops the server with one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlc_graph.platform.config import ConfigError, Settings
from tests.support.http import ROOT

PRODUCTION_SECRET = "p" * 40


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("MLC_ENV", "prod", "one of development, production"),
        ("MLC_COMPRESSION", "enabled", "one of 1, true, yes, on (on) or 0, false, no, off (off)"),
        ("MLC_BATCHING", "maybe", "(on) or"),
        ("PORT", "99999", "an integer from 1 to 65535"),
        ("PORT", "http", "an integer from 1 to 65535"),
        ("MLC_DB_POOL_MAX", "-5", "an integer 1 or more"),
        ("MLC_DB_POOL_MIN", "-1", "an integer 0 or more"),
        ("MLC_COST_BUDGET", "-100", "an integer 1 or more"),
        ("MLC_MAX_DEPTH", "0", "an integer 1 or more"),
        ("MLC_DB_ACQUIRE_TIMEOUT", "0", "a number above 0"),
        ("MLC_SHUTDOWN_TIMEOUT", "nan", "a number 0 or more"),
        ("MLC_SLOW_QUERY_MS", "-1", "a number 0 or more"),
        ("MLC_LOG_LEVEL", "loud", "one of debug, info, warning, error, critical"),
        ("MLC_EXECUTOR", "fast", "one of compiled, graphql-core"),
        ("MLC_METRICS_ALLOW", "10.0.0.0/8, intranet", "comma-separated addresses or networks"),
        ("DATABASE_URL", "mysql://db/app", "a URL starting with postgresql:// or postgres://"),
        ("REDIS_URL", "localhost:6379", "a URL starting with redis://"),
        ("MLC_ALLOWED_ORIGINS", "https://app.example/login", "comma-separated origins like https://"),
        ("MLC_ALLOWED_ORIGINS", "app.example", "comma-separated origins like https://"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_value_and_what_is_allowed(
    name: str, value: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({name: value})
    message = str(refused.value)
    assert "\n" not in message
    shown = value.split(",")[-1].strip() if name == "MLC_METRICS_ALLOW" else value
    assert message.startswith(f"{name}={shown!r} is not allowed: ")
    assert allowed in message


def test_pool_minimum_above_maximum_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"MLC_DB_POOL_MIN='8' is not allowed: at most MLC_DB_POOL_MAX \(4\)"
    ):
        Settings.from_env({"MLC_DB_POOL_MIN": "8", "MLC_DB_POOL_MAX": "4"})


@pytest.mark.parametrize(("word", "expected"), [("off", False), ("0", False), ("ON", True), ("yes", True)])
def test_boolean_words_in_either_case_are_read(word: str, expected: bool) -> None:
    assert Settings.from_env({"MLC_COMPRESSION": word}).compression is expected


def test_unset_and_empty_values_take_the_defaults() -> None:
    assert Settings.from_env({}) == Settings.from_env({"PORT": "", "MLC_ENV": " ", "MLC_COMPRESSION": ""})
    defaults = Settings.from_env({})
    assert (defaults.env, defaults.port, defaults.compression) == ("development", 8000, True)


def test_allowed_origins_are_normalized_as_browsers_send_them() -> None:
    settings = Settings.from_env({"MLC_ALLOWED_ORIGINS": "https://App.Example/, http://localhost:5173 ,*"})
    assert settings.allowed_origins == ("https://app.example", "http://localhost:5173", "*")


def test_production_spelled_out_is_production() -> None:
    settings = Settings.from_env({"MLC_ENV": "Production", "MLC_JWT_SECRET": PRODUCTION_SECRET})
    assert settings.production
    assert not settings.debug_sql_count


def test_serve_with_a_misspelled_environment_stops_with_one_line() -> None:
    """`MLC_ENV=prod` used to serve development mode with the committed JWT secret; now nothing starts."""
    env = {**os.environ, "MLC_ENV": "prod", "MLC_JWT_SECRET": PRODUCTION_SECRET, "PORT": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mlc_graph.cli", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "configuration error: MLC_ENV='prod' is not allowed: one of development, production"
    ]


def test_trusted_proxies_and_the_beacon_limit_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"^MLC_TRUSTED_PROXIES='lb' is not allowed"):
        Settings.from_env({"MLC_TRUSTED_PROXIES": "10.0.0.0/8,lb"})
    with pytest.raises(
        ConfigError, match=r"^MLC_WEB_VITALS_PER_MINUTE='0' is not allowed: an integer 1 or more"
    ):
        Settings.from_env({"MLC_WEB_VITALS_PER_MINUTE": "0"})


def test_idempotency_claims_outlive_both_the_sync_history_and_the_offline_replay() -> None:
    assert Settings.from_env({}).idempotency_days == 30
    assert Settings.from_env({"MLC_SYNC_RETENTION_DAYS": "90"}).idempotency_days == 90
    # A shorter sync history must not forget a play submitScores would still accept again.
    short = {"MLC_SYNC_RETENTION_DAYS": "3", "MLC_OFFLINE_REPLAY_DAYS": "7"}
    assert Settings.from_env(short).idempotency_days == 7
