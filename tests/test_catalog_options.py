"""`ray-history serve`'s catalog flags and their environment variables (ray_history.catalog_options)."""

from __future__ import annotations

import json
from typing import Any

import click
import pytest
from click.testing import CliRunner

from historyserver.server import ServerSettings
from ray_history.catalog_options import catalog_settings


@click.command()
@catalog_settings
def show(catalog: dict[str, Any]) -> None:
    click.echo(json.dumps(catalog))


def chosen(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(show, list(args), env=env)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_the_defaults_are_the_server_settings_defaults() -> None:
    defaults = ServerSettings()
    assert chosen() == {"keep_catalog": defaults.keep_catalog,
                        "catalog_index_interval": defaults.catalog_index_interval,
                        "full_refresh_interval": defaults.full_refresh_interval}  # fmt: skip


@pytest.mark.parametrize("off", ["0", "off", "OFF", "never"])
def test_the_index_interval_may_be_off(off: str) -> None:
    assert chosen("--catalog-index-interval", off)["catalog_index_interval"] is None


def test_flags_and_environment() -> None:
    assert chosen("--no-keep-catalog", "--catalog-index-interval", "60", "--full-refresh-interval", "0") == {
        "keep_catalog": False, "catalog_index_interval": 60.0, "full_refresh_interval": 0.0}  # fmt: skip
    env = {"RAY_HISTORY_KEEP_CATALOG": "false", "RAY_HISTORY_CATALOG_INDEX_INTERVAL": "off",
           "RAY_HISTORY_FULL_REFRESH_INTERVAL": "600"}  # fmt: skip
    assert chosen(env=env) == {"keep_catalog": False, "catalog_index_interval": None, "full_refresh_interval": 600.0}


def test_a_bad_interval_says_why() -> None:
    result = CliRunner().invoke(show, ["--catalog-index-interval", "soon"])
    assert result.exit_code == 2 and "not a number of seconds" in result.output
