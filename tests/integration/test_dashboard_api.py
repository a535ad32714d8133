"""The dashboard's data endpoints and /metrics against a real gateway with two
workers: figures equal `aperture query`'s, access rules, bad input, the
Host/Origin guard, prices on /v1/models, and metrics summed over workers."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import launch_gateway, wait_for
from .dashboard_traffic import (ADMIN, METRICS, SCRIPT_PROMPT, USER, dashboard_config, get_json,
                                raw_get, request, send_known_traffic)
from .test_capture import query_json


@pytest.fixture(scope="module")
def gw(tmp_path_factory, simulator):
    tmp = tmp_path_factory.mktemp("dash-api")
    g = launch_gateway(tmp, dashboard_config(simulator.url), "--workers", "2",
                       identity="serve-headers")
    sent = {ADMIN: send_known_traffic(g.url, ADMIN), USER: send_known_traffic(g.url, USER)}
    # Both users' records are in the store (the drain processes write them).
    wait_for(lambda: sum(r["requests"] for r in query_json(g.data_dir, "usage", "--by", "user"))
             == sum(sent.values()), timeout=30)
    g.extra["sent"] = sent
    yield g
    g.stop()


def _by(rows, key):
    return {r[key]: r for r in rows}


FIGURES = ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
           "reasoning_tokens", "tool_calls", "cost_usd", "unpriced_requests")


def test_usage_equals_aperture_query(gw):
    for by in ("model", "provider", "user", "tool"):
        want = _by(query_json(gw.data_dir, "usage", "--by", by), by)
        status, got = get_json(gw.url, "/api/usage?by=%s" % by, ADMIN)
        assert status == 200
        got = _by(got["rows"], by)
        assert set(got) == set(want)
        for k, row in want.items():
            for f in FIGURES:
                if f == "cost_usd" and row[f] is not None:
                    assert got[k][f] == pytest.approx(row[f], rel=1e-12), (by, k)
                else:
                    assert got[k][f] == row[f], (by, k, f)


def test_costs_are_estimated_and_unpriced_models_say_so(gw):
    _, got = get_json(gw.url, "/api/usage?by=model", ADMIN)
    rows = _by(got["rows"], "model")
    assert rows["claude-sonnet-4-6"]["cost_usd"] > 0
    assert rows["qwen3-coder:30b"]["cost_usd"] is None  # no price: never $0
    assert rows["qwen3-coder:30b"]["unpriced_requests"] == 2
    assert rows["no-such-model"]["cost_usd"] == 0  # refused: no provider saw it
    one = query_json(gw.data_dir, "--model", "claude-sonnet-4-6", "--user", ADMIN, "--limit", "1")[0]
    assert one["cost_usd"] == pytest.approx(
        (one["input_tokens"] * 3 + one["output_tokens"] * 15 + one["cache_read_tokens"] * 0.3
         + one["cache_write_tokens"] * 3.75) / 1e6)


def test_users_see_only_their_own(gw):
    _, mine = get_json(gw.url, "/api/usage?by=user", USER)
    assert [r["user"] for r in mine["rows"]] == [USER]
    status, body = get_json(gw.url, "/api/usage?user=%s" % ADMIN, USER)
    assert status == 403 and "only admins" in body["error"]["message"]
    assert get_json(gw.url, "/api/users", USER)[0] == 403
    assert get_json(gw.url, "/api/users", ADMIN)[0] == 200
    # Another user's session and capture: the same 404 as ones that do not exist.
    _, sessions = get_json(gw.url, "/api/sessions?user=%s&limit=1" % ADMIN, ADMIN)
    sid = sessions["sessions"][0]["session"]
    rid = query_json(gw.data_dir, "--user", ADMIN, "--limit", "1")[0]["id"]
    for path in ("/api/sessions/%s" % sid, "/api/captures/%s" % rid,
                 "/api/captures/%s/request_body" % rid):
        s_other, b_other = get_json(gw.url, path, USER)
        s_none, b_none = get_json(gw.url, path.replace(rid, "0" * 26).replace(sid, "nosuch"), USER)
        assert (s_other, b_other) == (s_none, b_none) and s_other == 404
        assert get_json(gw.url, path, ADMIN)[0] == 200
    assert get_json(gw.url, "/api/summary", "nobody@example.com")[0] == 403


def test_bad_parameters_are_400_naming_the_parameter(gw):
    for query, name in (("since=yesterday-ish", "since"), ("by=colour", "by"), ("bucket=week", "bucket"),
                        ("bucket=hour", "bucket"), ("colour=red", "colour"),
                        ("since=1h&until=2h", "since"), ("format=xml", "format")):
        status, body = get_json(gw.url, "/api/usage?" + query, ADMIN)
        assert status == 400 and body["error"]["message"].startswith(name + ":"), (query, body)
    for query, name in (("limit=0", "limit"), ("status=99", "status"), ("state=odd", "state"),
                        ("cursor=%%%", "cursor")):
        status, body = get_json(gw.url, "/api/sessions?" + query, ADMIN)
        assert status == 400 and body["error"]["message"].startswith(name + ":"), (query, body)


def test_sessions_and_captures(gw):
    _, out = get_json(gw.url, "/api/sessions?state=incomplete", ADMIN)
    assert out["sessions"] and all(s["states"].get("incomplete") for s in out["sessions"])
    _, page1 = get_json(gw.url, "/api/sessions?limit=3", ADMIN)
    _, page2 = get_json(gw.url, "/api/sessions?limit=3&cursor=" + page1["next"], ADMIN)
    assert not {s["session"] for s in page1["sessions"]} & {s["session"] for s in page2["sessions"]}
    rec = next(r for r in query_json(gw.data_dir, "--user", ADMIN, "--limit", "100")
               if r["model"] == "claude-sonnet-4-6" and r["status"] == 200 and not r["stream"])
    status, cap = get_json(gw.url, "/api/captures/" + rec["id"], ADMIN)
    assert status == 200 and cap["cost_usd"] == rec["cost_usd"]
    assert cap["request_body"]["kind"] == "json" and "pretty" in cap["request_body"]["views"]
    _, page = get_json(gw.url, "/api/captures/%s/request_body?view=pretty" % rec["id"], ADMIN)
    assert SCRIPT_PROMPT in json.loads(page["text"])["messages"][0]["content"]
    stream = next(r for r in query_json(gw.data_dir, "--user", ADMIN, "--provider", "bedrock")
                  if r["stream"] and r["api"] == "bedrock_model_invoke")
    _, ev = get_json(gw.url, "/api/captures/%s/response_body?view=events&limit=2" % stream["id"],
                     ADMIN)
    assert ev["kind"] == "eventstream" and len(ev["events"]) == 2 and ev["next_offset"] == 2
    assert ev["events"][0]["decoded"]["type"] == "message_start"
    _, raw = get_json(gw.url, "/api/captures/%s/response_body?limit=10" % stream["id"], ADMIN)
    assert raw["encoding"] == "base64" and raw["next_offset"] is not None


def test_models_carry_prices(gw):
    _, body = get_json(gw.url, "/v1/models", USER)
    models = _by(body["data"], "id")
    assert models["claude-sonnet-4-6"]["pricing"]["input"] == "0.000003"
    assert "pricing" not in models["qwen3-coder:30b"]
    _, ui = get_json(gw.url, "/api/models", USER)
    rows = {(m["provider"], m["model"]): m for m in ui["models"]}
    assert rows[("vertex", "claude-haiku-4-5")]["price"]["basis"] == "vertex/claude-haiku-4-5"
    assert rows[("local", "qwen3-coder:30b")]["price"] is None
    assert rows[("down", "down-model")]["price"]["basis"] == "config"


def test_host_and_origin_guard(gw):
    ok = raw_get(gw.port, "/api/summary", "localhost:%d" % gw.port, "tailscale-user-login: %s\r\n" % ADMIN)
    assert ok.startswith(b"HTTP/1.1 200")
    bad = raw_get(gw.port, "/api/summary", "evil.example:%d" % gw.port,
                  "tailscale-user-login: %s\r\n" % ADMIN)
    assert bad.startswith(b"HTTP/1.1 403") and b"host not allowed" in bad
    page = raw_get(gw.port, "/ui/", "rebind.evil.example", "tailscale-user-login: %s\r\n" % ADMIN)
    assert page.startswith(b"HTTP/1.1 403")
    config = raw_get(gw.port, "/api/config", "rebind.evil.example", "tailscale-user-login: %s\r\n" % ADMIN)
    assert config.startswith(b"HTTP/1.1 403")
    # clients' reads answer their own names, browsers' do not
    assert raw_get(gw.port, "/v1/models", "my-gateway.corp", "tailscale-user-login: %s\r\n"
                   % ADMIN).startswith(b"HTTP/1.1 200")
    assert raw_get(gw.port, "/v1/models", "rebind.evil.example", "tailscale-user-login: %s\r\n"
                   "sec-fetch-site: same-origin\r\n" % ADMIN).startswith(b"HTTP/1.1 403")
    # API formats answer any name, but not a browser's request from another origin.
    body = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "x"}]}
    assert request(gw.url, "POST", "/v1/chat/completions", body, login=ADMIN,
                   headers={"host": "my-gateway.corp"})[0] == 200
    status, _, out = request(gw.url, "POST", "/v1/chat/completions", body, login=ADMIN,
                             headers={"origin": "http://evil.example"})
    assert status == 403 and b"cross-origin" in out
    status, _, _ = request(gw.url, "PUT", "/api/config", {"config": "{}", "hash": "x"}, login=ADMIN,
                           headers={"origin": "http://evil.example"})
    assert status == 403
    status, _, _ = request(gw.url, "POST", "/v1/chat/completions", body, login=ADMIN,
                           headers={"origin": gw.url, "sec-fetch-site": "same-origin"})
    assert status == 200
    status, headers, _ = request(gw.url, "GET", "/ui/", login=ADMIN, headers={"origin": "http://x"})
    assert "content-security-policy" in headers and "script-src 'self'" in headers[
        "content-security-policy"]
    assert not any(k.startswith("access-control-") for k in headers)


def test_pages_answer_404_and_403(gw):
    assert request(gw.url, "GET", "/ui/no-such-page/", login=ADMIN)[0] == 404
    assert request(gw.url, "GET", "/ui/settings/", login=USER)[0] == 403
    assert request(gw.url, "GET", "/ui/dashboard/%s" % ADMIN, login=USER)[0] == 403
    assert request(gw.url, "GET", "/ui/dashboard/%s" % USER, login=ADMIN)[0] == 200
    assert request(gw.url, "GET", "/ui/", login="stranger@example.com")[0] == 403


def _scrape(gw, login=METRICS) -> dict:
    status, headers, body = request(gw.url, "GET", "/metrics", login=login)
    assert status == 200, body
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_metrics_sum_both_workers(gw):
    total = sum(gw.extra["sent"].values())
    by_model = _by(query_json(gw.data_dir, "usage", "--by", "model"), "model")
    for _ in range(4):  # new connections: each scrape may reach either worker
        m = _scrape(gw)
        assert [s.value for s in m["aperture_workers"]] == [2]
        reqs = [s for s in m["aperture_requests_total"]]
        # the test's own extra requests of test_host_and_origin_guard may have run first
        assert sum(s.value for s in reqs) >= total
        assert sum(s.value for s in reqs if s.labels["state"] == "incomplete") == 2
        assert sum(s.value for s in reqs if s.labels["state"] == "refused"
                   and s.labels["status_class"] == "4xx") >= 2
        tokens: dict = {}
        for s in m["aperture_tokens_total"]:
            key = (s.labels["model"], s.labels["kind"])
            tokens[key] = tokens.get(key, 0) + s.value
        for model in ("claude-haiku-4-5", "gemini-2.5-pro", "amazon.nova-pro-v1:0"):
            assert tokens[(model, "input")] == by_model[model]["input_tokens"]
            assert tokens[(model, "output")] == by_model[model]["output_tokens"]
        cost: dict = {}
        for s in m["aperture_cost_usd_total"]:
            cost[s.labels["model"]] = cost.get(s.labels["model"], 0) + s.value
        assert cost["claude-haiku-4-5"] == pytest.approx(by_model["claude-haiku-4-5"]["cost_usd"])
        hist = [s for s in m["aperture_request_duration_seconds_count"]]
        assert sum(s.value for s in hist) == sum(s.value for s in reqs)
        assert "aperture_in_flight_streams" in m and "aperture_capture_backlog_bytes" in m
        assert {s.labels["state"] for s in m["aperture_upstream_connections"]} == {"active", "idle"}


def test_metrics_need_read_metrics_or_admin(gw):
    assert request(gw.url, "GET", "/metrics", login=USER)[0] == 403
    assert request(gw.url, "GET", "/metrics", login=ADMIN)[0] == 200
    assert request(gw.url, "GET", "/metrics", login=METRICS)[0] == 200
    # read_metrics alone gives no role: no models, no dashboard
    assert request(gw.url, "GET", "/api/summary", login=METRICS)[0] == 403


def test_csv(gw):
    status, headers, body = request(gw.url, "GET", "/api/users?format=csv", login=ADMIN)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    lines = body.decode().splitlines()
    assert lines[0].startswith("user,requests,") and len(lines) == 3
