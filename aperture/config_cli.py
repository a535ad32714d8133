"""`aperture check-config FILE`: validate a config file without starting anything."""

from __future__ import annotations

import click

from aperture.config import read_config_text
from aperture.configstore import compile_config
from aperture.errors import ConfigError


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@click.command("check-config")
@click.argument("file", type=click.Path(path_type=str))
@click.pass_context
def check_config(ctx: click.Context, file: str) -> None:
    """Check an aperture config file (HuJSON) and list every problem in it."""
    try:
        # providers and grants together: the same problems PUT /api/config reports
        config, _ = compile_config(read_config_text(file), source=file, log_warnings=False)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        ctx.exit(1)
    for warning in config.warnings:
        click.echo(f"{file}: warning: {warning}", err=True)
    models = sum(len(p.models) for p in config.providers.values())
    click.echo(f"{file}: ok ({_plural(len(config.providers), 'provider')}, {_plural(models, 'model')})")
