"""Assembles a gateway for `aperture serve`: configuration, identity source,
capture store, and (for the embedded default) the in-process provider
simulator. The returned factory runs inside each worker, after its event loop
exists."""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import shutil
import tempfile

from aperture.capture.retention import parse_retention
from aperture.configstore import ConfigStore, compile_config
from aperture.gateway import Gateway, Settings
from aperture.identity.sources import make_source

log = logging.getLogger("aperture.serve")


def capture_writer(choice: str, retention: str | None) -> str:
    """Where LMDB is written from. "process" (a child process per worker)
    keeps the writer's Python work off the worker's GIL: capture then costs the
    request path one journal append. With zero retention bodies never reach
    the journal, and sessions are found from them in memory, so the writer is
    a thread of the worker."""
    if retention is not None and parse_retention(retention) == 0:
        if choice == "process":
            log.info("zero retention: captures are written from a thread of each worker")
        return "thread"
    return "process" if choice == "auto" else choice


def make_app_factory(config_path: str | None, settings: Settings, *, identity_spec: str,
                     tailscaled_socket: str, data_dir: str | None, capture: str = "auto",
                     grants_capability: str | None = None):
    # Made here, so a bad identity spec fails before any worker starts.
    source = make_source(identity_spec, tailscaled_socket=tailscaled_socket,
                         grants_capability=grants_capability)
    # Made before the workers fork: where they find each other's metrics
    # (aperture.metrics), private to this user, removed when serve exits.
    metrics_dir = tempfile.mkdtemp(prefix="aperture-metrics-")
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(metrics_dir, True))
    settings = dataclasses.replace(
        settings, metrics_dir=metrics_dir,
        data_dir=os.path.abspath(data_dir) if data_dir is not None else None)

    async def factory() -> Gateway:
        closers = []
        if config_path is not None:
            store = ConfigStore.open(config_path)
        else:
            from aperture.default_config import default_config_text
            from aperture.sim.server import start_simulator

            server, port = await start_simulator("127.0.0.1", 0)
            closers.append(server.close)
            cfg, policy = compile_config(default_config_text("http://127.0.0.1:%d" % port),
                                         source="<default>")
            store = ConfigStore(None, cfg, policy)
            log.info("embedded default configuration: provider simulator on 127.0.0.1:%d", port)
        cfg = store.current[0]
        if data_dir is None:
            from aperture.capture.record import LogSink

            sink = LogSink()
        else:
            from aperture.capture.store import CaptureStore

            retention = None
            database = cfg.document.get("database")
            if isinstance(database, dict) and isinstance(database.get("retention"), dict):
                retention = database["retention"].get("duration")
            sink = CaptureStore(data_dir, max_body_bytes=settings.capture_body_bytes,
                                retention=retention, writer=capture_writer(capture, retention))
        gateway = Gateway(store, settings, sink=sink, identity_source=source)
        gateway.closers.extend(closers)
        return gateway

    return factory
