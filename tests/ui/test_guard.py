"""The Host and Origin rules (aperture.ui.guard)."""

from __future__ import annotations

import pytest

from aperture.ui.guard import Guard, default_hosts, split_host


class Req:
    def __init__(self, method="GET", path="/ui/", **headers):
        self.method, self.path = method, path
        self.headers = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]


API = object()
UI = object()
guard = Guard(("ai", "localhost", "gw", "*.corp.example"), {id(API)})


@pytest.mark.parametrize("host, ok", [
    ("ai", True), ("AI:80", True), ("localhost:8080", True), ("127.0.0.1:8080", True),
    ("[::1]:8080", True), ("100.101.102.103", True), ("ai.tail1234.ts.net", True),
    ("gw.tailnet.ts.net.", True), ("x.corp.example", True), ("evil.example", False),
    ("ai.evil.example", False), ("evil.ts.net", False), ("", False),
])
def test_hosts(host, ok):
    assert (guard.check(Req(host=host), UI) is None) is ok


def test_api_paths_answer_any_name_unless_a_browser_asks():
    assert guard.check(Req("POST", "/v1/messages", host="my.name"), API) is None
    assert guard.check(Req("POST", "/v1/messages", host="my.name", origin="http://my.name"),
                       API) is not None
    assert guard.check(Req("POST", "/v1/messages", host="ai", origin="http://ai"), API) is None


@pytest.mark.parametrize("headers, ok", [
    ({"host": "ai"}, True),  # no browser
    ({"host": "ai", "origin": "http://ai"}, True),
    ({"host": "ai:8080", "origin": "http://ai:8080", "sec_fetch_site": "same-origin"}, True),
    ({"host": "ai", "origin": "http://evil.example"}, False),
    ({"host": "ai", "origin": "http://ai:8080"}, False),
    ({"host": "ai", "origin": "null"}, False),
    ({"host": "ai", "sec_fetch_site": "cross-site"}, False),
    ({"host": "ai", "sec_fetch_site": "same-site", "origin": "http://ai"}, False),
])
def test_state_changing_requests_must_be_same_origin(headers, ok):
    assert (guard.check(Req("PUT", "/api/config", **headers), UI) is None) is ok
    # reads are not state-changing
    assert guard.check(Req("GET", "/api/config", **headers), UI) is None


def test_defaults_and_host_parsing():
    hosts = default_hosts("my-listen-name")
    assert "ai" in hosts and "localhost" in hosts and "my-listen-name" in hosts
    assert "0.0.0.0" not in default_hosts("0.0.0.0")
    assert split_host("[::1]:80") == ("::1", "80") and split_host("AI.") == ("ai", "")
