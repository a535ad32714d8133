"""The `aperture` command: a thin click layer that parses options and calls in."""

from __future__ import annotations

import getpass
import logging
import os
import sys

import importlib

import click

DEFAULT_SOCKET = "/var/run/tailscale/tailscaled.sock"

_SIZE_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "KIB": 1024, "M": 1000**2, "MB": 1000**2,
               "MIB": 1024**2, "G": 1000**3, "GB": 1000**3, "GIB": 1024**3}


def parse_size(text: str) -> int:
    text = text.strip().upper()
    digits = text.rstrip("KMGIB ")
    unit = text[len(digits):].strip()
    if not digits.isdigit() or unit not in _SIZE_UNITS:
        raise click.BadParameter("expected a size like 32MiB, 512KB or 1000000, got %r" % text)
    return int(digits) * _SIZE_UNITS[unit]


class LazyGroup(click.Group):
    """Subcommands that live in other modules are imported when used, so that
    `aperture query` does not load the server and `aperture serve` not the CLI
    of the query side."""

    lazy = {
        "check-config": "aperture.config_cli:check_config",
        "query": "aperture.capture.cli:query",
        "simulate": "aperture.sim.cli:simulate",
    }

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | self.lazy.keys())

    def get_command(self, ctx, name):
        target = self.lazy.get(name)
        if target is None:
            return super().get_command(ctx, name)
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "APERTURE"})
@click.version_option(package_name="aperture")
def main() -> None:
    """aperture: an AI gateway for tailnets.

    Clients point at the gateway; it knows the caller from their Tailscale
    identity, routes by model to the configured provider with that provider's
    credentials, streams the answer back untouched, and captures every exchange.
    """


@main.command()
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT|tailnet[:PORT]",
              help="Where to listen. tailnet: only on this node's Tailscale addresses, read from "
                   "tailscaled (--tailscaled-socket) and followed when they change; port 80 unless "
                   "given. With tailscaled in userspace networking, which forwards tailnet "
                   "connections to 127.0.0.1, that is 127.0.0.1:PORT.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Worker processes sharing the port (SO_REUSEPORT).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Aperture config file (JSON/HuJSON). Without it: the embedded default, "
                   "whose provider is the built-in simulator.")
@click.option("--data-dir", default="./aperture-data", show_default=True, type=click.Path(file_okay=False),
              help="Where captures are stored (LMDB).")
@click.option("--no-capture", is_flag=True, help="Do not store exchanges (log one line each instead).")
@click.option("--capture-writer", default="auto", show_default=True,
              type=click.Choice(["auto", "process", "thread"]),
              help="Where captures are written to LMDB: a child process per worker (auto, except "
                   "with zero retention) or a thread of the worker.")
@click.option("--identity", "identity_spec", default=None, metavar="SOURCE",
              help="tailscale | serve-headers | dev:LOGIN. Default: tailscale when the tailscaled "
                   "socket exists; dev:<user> with the embedded default config.")
@click.option("--tailscaled-socket", default=DEFAULT_SOCKET, show_default=True,
              type=click.Path(dir_okay=False))
@click.option("--tailnet-poll", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
              help="With --listen tailnet: seconds between two reads of tailscaled's status "
                   "(addresses that appear are bound, those gone are closed).")
@click.option("--grants-capability", default="tailscale.com/cap/aperture", show_default=True,
              metavar="NAME",
              help="Capability under which grants from the tailnet policy file arrive (WhoIs "
                   "CapMap); they add to the config's grants. A control server that refuses "
                   "tailscale.com names (headscale) needs another, e.g. example.com/cap/aperture.")
@click.option("--max-body-size", default="32MiB", show_default=True, help="Largest request body accepted.")
@click.option("--capture-body-size", default="8MiB", show_default=True,
              help="Bodies above this size are captured truncated.")
@click.option("--connect-timeout", default=10.0, show_default=True, type=float, help="Seconds.")
@click.option("--first-byte-timeout", default=600.0, show_default=True, type=float,
              help="Seconds to wait for the upstream's response head.")
@click.option("--idle-timeout", default=300.0, show_default=True, type=float,
              help="Seconds an upstream response may stay silent mid-body.")
@click.option("--drain-timeout", default=30.0, show_default=True, type=float,
              help="On SIGTERM, seconds in-flight requests get to finish.")
@click.option("--header-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds a client gets to send a whole request head (else 408).")
@click.option("--body-timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds a request body may go without new data (else 408).")
@click.option("--max-connections", default=None, type=click.IntRange(1),
              help="Open client connections per worker; past it new ones are answered 503. "
                   "Default: what the open-files limit allows (ulimit -n, two per connection).")
@click.option("--ui-hosts", default=None, metavar="NAMES",
              help="Comma-separated host names the dashboard, its data and /metrics answer to "
                   "(*.example.com for a domain). Default: ai, localhost, this machine's name, "
                   "those names under a tailnet's .ts.net domain and the --listen host; IP "
                   "addresses are always accepted.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def serve(listen, workers, config_path, data_dir, no_capture, capture_writer, identity_spec, tailscaled_socket,
          tailnet_poll, grants_capability, max_body_size, capture_body_size, connect_timeout,
          first_byte_timeout, idle_timeout, drain_timeout, header_timeout, body_timeout, max_connections, ui_hosts, log_level) -> None:
    """Run the gateway."""
    from aperture.config import read_config_text
    from aperture.configstore import compile_config
    from aperture.errors import ConfigError
    from aperture.gateway import Settings
    from aperture.ingress.server import parse_listen, serve as run_server
    from aperture.ingress.tailnet import parse_tailnet_listen
    from aperture.serve import make_app_factory

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if parse_tailnet_listen(listen) is not None:
            listen_host = ""
        else:
            listen_host, _ = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    config = None
    if config_path is not None:
        try:
            config, _ = compile_config(read_config_text(config_path), source=config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            sys.exit(1)
    if identity_spec is None:
        if os.path.exists(tailscaled_socket):
            identity_spec = "tailscale"
        elif config is None:
            identity_spec = "dev:%s@localhost" % getpass.getuser()
        else:
            raise click.UsageError(
                "no tailscaled socket at %s: pass --tailscaled-socket, or --identity "
                "serve-headers or dev:LOGIN" % tailscaled_socket)
    settings = Settings(max_body_bytes=parse_size(max_body_size),
                        capture_body_bytes=parse_size(capture_body_size),
                        connect_timeout=connect_timeout, first_byte_timeout=first_byte_timeout,
                        idle_timeout=idle_timeout, listen_host=listen_host,
                        ui_hosts=tuple(h.strip() for h in (ui_hosts or "").split(",") if h.strip()))
    try:
        factory = make_app_factory(config_path, settings, identity_spec=identity_spec,
                                   tailscaled_socket=tailscaled_socket,
                                   grants_capability=grants_capability,
                                   data_dir=None if no_capture else data_dir,
                                   capture=os.environ.get("APERTURE_CAPTURE_WRITER") or capture_writer)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(run_server(factory, listen, workers=workers, drain_timeout=drain_timeout,
                        header_timeout=header_timeout, body_timeout=body_timeout,
                        max_connections=max_connections, tailscaled_socket=tailscaled_socket,
                        tailnet_poll=tailnet_poll))


if __name__ == "__main__":
    main()
