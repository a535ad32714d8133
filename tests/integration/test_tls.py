"""https baseurls: TLS to the provider, verified against the system's CA store
(here a test CA, given through OpenSSL's SSL_CERT_FILE)."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess

import pytest

from aperture.ingress.protocol import HttpConnection, ServerState
from aperture.sim.server import SimSettings, Simulator

from .conftest import raw_request

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=aperture test CA")
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "srv.pem", "-days", "2", "-extfile", "san.ext")
    run("req", "-x509", *ec, "-keyout", "other.key", "-out", "other.pem", "-days", "2", "-subj", "/CN=other CA")
    return d


@pytest.fixture(scope="module")
def tls_sim(loop_thread, certs):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs / "srv.pem", certs / "srv.key")
    sim = Simulator(SimSettings())

    async def start():
        state = ServerState(sim.handle)
        server = await asyncio.get_running_loop().create_server(
            lambda: HttpConnection(state), "127.0.0.1", 0, ssl=ctx)
        loop_thread.servers.append((server, state))
        return server.sockets[0].getsockname()[1]

    port = loop_thread.run(start())
    return sim, port


def config(port: int) -> dict:
    return {"providers": {"secure": {"baseurl": "https://localhost:%d" % port, "apikey": "sk-tls",
                                     "models": ["gpt-5.4"]}},
            "grants": [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [{"role": "user"},
                                                                            {"models": "**"}]}}]}


BODY = json.dumps({"model": "gpt-5.4", "messages": [{"role": "user", "content": "over TLS"}]}).encode()
REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: ai\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)


def test_https_provider_verified_by_ca_store(gateway_factory, tls_sim, certs):
    sim, port = tls_sim
    gw = gateway_factory(config(port), env={"SSL_CERT_FILE": str(certs / "ca.pem")})
    out = raw_request(gw.port, REQUEST)
    head, _, payload = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), out[:300]
    assert json.loads(payload)["object"] == "chat.completion"
    seen = sim.seen[-1]
    assert seen.headers["host"] == "localhost:%d" % port
    assert seen.headers["authorization"] == "Bearer sk-tls"


def test_untrusted_certificate_is_502(gateway_factory, tls_sim, certs):
    _, port = tls_sim
    gw = gateway_factory(config(port), env={"SSL_CERT_FILE": str(certs / "other.pem")})
    out = raw_request(gw.port, REQUEST)
    head, _, payload = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502")
    assert "TLS handshake with upstream localhost:%d failed" % port in json.loads(payload)["error"]["message"]
