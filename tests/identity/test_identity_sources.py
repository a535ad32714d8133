"""Choosing an identity source; the dev identity; headers never forwarded."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile

import pytest

from aperture.identity import Identity
from aperture.identity.dev import DevSource
from aperture.identity.serve_headers import ServeHeadersSource
from aperture.identity.sources import (
    IDENTITY_HEADERS,
    IdentitySource,
    default_spec,
    is_identity_header,
    make_source,
)
from aperture.identity.whois import WhoisSource


def test_make_source_tailscale():
    src = make_source("tailscale", tailscaled_socket="/tmp/x.sock")
    assert isinstance(src, WhoisSource) and src.socket_path == "/tmp/x.sock"
    assert isinstance(src, IdentitySource)


def test_make_source_serve_headers():
    src = make_source("serve-headers", tailscaled_socket="/nowhere")
    assert isinstance(src, ServeHeadersSource) and src.per_request


def test_make_source_dev(caplog):
    with caplog.at_level(logging.WARNING, logger="aperture.identity"):
        src = make_source("dev:alice@example.com", tailscaled_socket="/nowhere")
    assert isinstance(src, DevSource) and not src.per_request
    ident = asyncio.run(src.resolve(("100.64.0.1", 1), [(b"Tailscale-User-Login", b"mallory@x")]))
    assert ident == Identity(login="alice@example.com", display_name="alice@example.com", node_name="dev", source="dev")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "not for production" in warnings[0].getMessage()


@pytest.mark.parametrize("spec", ["", "dev", "dev:", "dev:  ", "tailscal", "headers", "Tailscale"])
def test_bad_specs(spec):
    with pytest.raises(ValueError) as e:
        make_source(spec, tailscaled_socket="/nowhere")
    assert "dev" in str(e.value)


def test_default_spec():
    with tempfile.TemporaryDirectory(prefix="ts-") as d:
        path = os.path.join(d, "tailscaled.sock")
        assert default_spec(path) is None
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        try:
            assert default_spec(path) == "tailscale"
        finally:
            s.close()


def test_identity_headers():
    assert IDENTITY_HEADERS == {
        b"tailscale-user-login",
        b"tailscale-user-name",
        b"tailscale-user-profile-pic",
        b"tailscale-headers-info",
        b"tailscale-funnel-request",
        b"tailscale-app-capabilities",
    }
    assert is_identity_header(b"Tailscale-User-Login")
    assert not is_identity_header(b"x-api-key")
