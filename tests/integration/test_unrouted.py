"""What aperture does not serve, and what coding agents call besides the
model APIs: requests on unknown paths and methods (answered in the format
the path suggests, logged, counted in /metrics, captured as refused), Bedrock
model ids in their other forms, and Bedrock's inference-profile listing."""

from __future__ import annotations

import json
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config as BotoConfig
from prometheus_client.parser import text_string_to_metric_families

from aperture.capture.query import CaptureReader, Filter
from tests.integration.conftest import launch_gateway, provider_config, start_handler_server

SECRET = "AIzaSyClientKey-not-for-logs"
BEDROCK_MODELS = ["us.anthropic.claude-sonnet-4-6", "us.anthropic.claude-haiku-4-5",
                  "amazon.nova-pro-v1:0"]


@pytest.fixture(scope="module")
def upstream(loop_thread):
    """The simulator behind a recorder of the paths that reach it."""
    from aperture.sim.server import Simulator

    sim = Simulator()
    seen: list[str] = []

    async def handle(req, resp):
        seen.append(req.path)
        await sim.handle(req, resp)

    _, port = start_handler_server(loop_thread, handle)
    return "http://127.0.0.1:%d" % port, seen


@pytest.fixture(scope="module")
def gw(tmp_path_factory, upstream):
    url, _ = upstream
    config = provider_config(url, providers={
        "bedrock": {"baseurl": url, "apikey": "bedrock-provider-key", "models": BEDROCK_MODELS,
                    "compatibility": {"bedrock_model_invoke": True, "bedrock_converse": True}}})
    # alice: every model; bob: only the Claude models of Bedrock, named by their listed ids
    config["grants"] = [
        {"src": ["alice@example.com"], "app": {"tailscale.com/cap/aperture": [
            {"role": "admin"}, {"models": "**"}]}},
        {"src": ["bob@example.com"], "app": {"tailscale.com/cap/aperture": [
            {"role": "user"}, {"models": "bedrock/us.anthropic.*"}]}},
    ]
    process = launch_gateway(tmp_path_factory.mktemp("unrouted"), config, identity="serve-headers")
    yield process
    process.stop()


def request(gw, method: str, path: str, body: bytes | None = None, user: str = "alice@example.com",
            headers: dict | None = None):
    req = urllib.request.Request(gw.url + path, data=body, method=method, headers={
        "tailscale-user-login": user, "content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def records_since(gw, since: float, n: int) -> list[dict]:
    deadline = time.monotonic() + 15
    while True:
        with CaptureReader(str(gw.data_dir)) as reader:
            rows = reader.records(Filter(since=since), limit=None)
        if len(rows) >= n or time.monotonic() > deadline:
            return list(reversed(rows))
        time.sleep(0.05)


def unrouted_counts(gw) -> dict:
    status, _, body = request(gw, "GET", "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "aperture_unrouted_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[(sample.labels["method"], sample.labels["status"])] = sample.value
    return out


# path -> (method, the error shape the caller's format has)
UNSERVED = [
    ("GET", "/v1/assistants", "openai"),
    ("POST", "/v1/messages/batches", "anthropic"),
    ("GET", "/v1beta/cachedContents?key=" + SECRET, "google"),
    ("GET", "/bedrock/foundation-models", "bedrock"),
    ("DELETE", "/v1/chat/completions", "openai"),  # a method the API path does not take
    ("GET", "/v1beta/models/gemini-2.5-pro:generateContent?key=" + SECRET, "google"),
    ("PUT", "/bedrock/model/us.anthropic.claude-sonnet-4-6/invoke", "bedrock"),
]


def check_shape(shape: str, status: int, headers: dict, body: bytes, method: str, path: str) -> None:
    doc = json.loads(body)
    bare = path.split("?")[0]
    if shape == "openai":
        assert set(doc) == {"error"} and bare in doc["error"]["message"]
        assert doc["error"]["type"] in ("not_found_error", "invalid_request_error")
    elif shape == "anthropic":
        assert doc["type"] == "error" and doc["error"]["type"] == "not_found_error"
        assert bare in doc["error"]["message"]
    elif shape == "google":
        assert doc["error"]["code"] == status and bare in doc["error"]["message"]
        assert doc["error"]["status"] == ("NOT_FOUND" if status == 404 else "INVALID_ARGUMENT")
    else:
        assert set(doc) == {"message"} and bare in doc["message"]
        assert headers["x-amzn-errortype"] == ("ResourceNotFoundException" if status == 404
                                               else "ValidationException")
    assert method in json.dumps(doc)


def test_unserved_requests_are_answered_logged_counted_and_captured(gw):
    before = unrouted_counts(gw)
    since = time.time() - 0.001
    expected = {}
    for method, path, shape in UNSERVED:
        status, headers, body = request(gw, method, path, body=b"{}" if method in ("POST", "PUT") else None)
        want = 405 if method in ("DELETE", "PUT") or ":generateContent" in path else 404
        assert status == want, (method, path, status, body)
        check_shape(shape, status, headers, body, method, path)
        expected[(method, str(status))] = expected.get((method, str(status)), 0) + 1
    after = unrouted_counts(gw)
    for key, n in expected.items():
        assert after.get(key, 0) - before.get(key, 0) == n, key
    rows = records_since(gw, since, len(UNSERVED))
    assert [(r["method"], r["path"].split("?")[0]) for r in rows] == [
        (m, p.split("?")[0]) for m, p, _ in UNSERVED]
    for row, (method, path, _) in zip(rows, UNSERVED):
        assert row["state"] == "refused" and row["status"] in (404, 405)
        assert row["user"] == "alice@example.com" and row["api"] == "" and row["provider"] == ""
        assert SECRET not in row["path"]
        if "key=" in path:
            assert row["path"].endswith("?key=[removed]")
        assert row["error"].startswith(("no route for", "%s is not allowed" % method))
    log = gw.log()
    assert SECRET not in log
    assert "unrouted request: GET /v1beta/cachedContents?key=[removed] from alice@example.com" in log
    assert "unrouted request: DELETE /v1/chat/completions from alice@example.com" in log


def test_dashboard_reads_refused_unrouted_records(gw):
    since = time.time() - 0.001
    request(gw, "GET", "/v1/nothing-here")
    [row] = records_since(gw, since, 1)
    for path in ("/api/summary", "/api/usage?by=model", "/api/usage?by=provider",
                 "/api/sessions?limit=50", "/api/sessions/" + row["session"],
                 "/api/captures/" + row["id"], "/api/captures/%s/response_body" % row["id"],
                 "/ui/", "/ui/logs/"):
        status, _, body = request(gw, "GET", path)
        assert status == 200, (path, body[:300])
    status, _, body = request(gw, "GET", "/api/captures/" + row["id"])
    cap = json.loads(body)
    assert cap["state"] == "refused" and cap["path"] == "/v1/nothing-here"


def invoke(gw, model_id: str, user: str = "alice@example.com"):
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 32,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    return request(gw, "POST", "/bedrock/model/%s/invoke" % model_id, body, user=user)


@pytest.mark.parametrize("asked", ["claude-sonnet-4-6", "global.anthropic.claude-sonnet-4-6",
                                   "anthropic.claude-sonnet-4-6-v1:0",
                                   "eu.anthropic.claude-sonnet-4-6-20250514-v1:0"])
def test_bedrock_ids_in_other_forms_route_and_go_upstream_as_sent(gw, upstream, asked):
    _, seen = upstream
    since = time.time() - 0.001
    status, _, body = invoke(gw, asked, user="bob@example.com")
    assert status == 200, body
    assert json.loads(body)["type"] == "message"
    assert seen[-1] == "/model/%s/invoke" % asked
    [row] = records_since(gw, since, 1)
    assert (row["provider"], row["model"], row["path"]) == (
        "bedrock", "us.anthropic.claude-sonnet-4-6", "/bedrock/model/%s/invoke" % asked)


def test_bedrock_grants_are_checked_on_the_listed_id(gw):
    status, headers, body = invoke(gw, "amazon.nova-pro-v1:0", user="bob@example.com")
    assert status == 403 and headers["x-amzn-errortype"] == "AccessDeniedException"
    assert "bedrock/amazon.nova-pro-v1:0 not granted" in json.loads(body)["message"]
    status, headers, body = invoke(gw, "us.anthropic.claude-sonnet-9", user="bob@example.com")
    assert status == 404 and headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert "us.anthropic.claude-sonnet-9 not found" in json.loads(body)["message"]


def test_bad_input_is_a_4xx_in_the_callers_shape(gw):
    status, headers, body = invoke(gw, "bad%zzid")
    assert status == 400 and headers["x-amzn-errortype"] == "ValidationException"
    assert "model id in the path is not decodable" in json.loads(body)["message"]
    status, _, body = request(gw, "POST", "/v1beta/models/gemini%ZZ:generateContent", b"{}")
    assert status == 400 and "not decodable" in json.loads(body)["error"]["message"]
    # a format no provider of this gateway speaks (no Vertex provider here)
    status, _, body = request(gw, "POST", "/v1/projects/p/locations/l/publishers/anthropic/models/"
                              "claude-sonnet-4-6:rawPredict", b'{"messages": []}')
    doc = json.loads(body)
    assert status == 400 and doc["type"] == "error"
    assert "no provider of this gateway speaks the google_raw_predict API format" in doc["error"]["message"]
    status, _, body = request(gw, "POST", "/v1beta/models/gemini-2.5-pro:generateContent",
                              b'{"contents": [{"parts": [{"text": "hi"}]}]}')
    doc = json.loads(body)
    assert status == 400 and doc["error"]["status"] == "INVALID_ARGUMENT"
    assert "no provider of this gateway speaks the gemini_generate_content API format" \
        in doc["error"]["message"]


def bedrock_client(gw, user: str):
    client = boto3.client("bedrock", endpoint_url=gw.url + "/bedrock", region_name="us-east-1",
                          aws_access_key_id="-", aws_secret_access_key="-",
                          config=BotoConfig(retries={"max_attempts": 1}))
    client.meta.events.register("before-send.bedrock.*", lambda request, **_: request.headers.__setitem__(
        "tailscale-user-login", user))
    return client


def test_inference_profiles_list_the_bedrock_models_the_caller_may_use(gw):
    """Claude Code in Bedrock mode calls ListInferenceProfiles: the AWS SDK
    reads aperture's answer, which lists only what the caller is granted."""
    alice = bedrock_client(gw, "alice@example.com").list_inference_profiles(typeEquals="SYSTEM_DEFINED")
    bob = bedrock_client(gw, "bob@example.com").list_inference_profiles(typeEquals="SYSTEM_DEFINED")
    assert [p["inferenceProfileId"] for p in alice["inferenceProfileSummaries"]] == BEDROCK_MODELS
    assert [p["inferenceProfileId"] for p in bob["inferenceProfileSummaries"]] == BEDROCK_MODELS[:2]
    assert "nextToken" not in bob
    sonnet = bob["inferenceProfileSummaries"][0]
    assert sonnet["status"] == "ACTIVE" and sonnet["type"] == "SYSTEM_DEFINED"
    assert sonnet["inferenceProfileArn"] == ("arn:aws:bedrock:us-east-1::inference-profile/"
                                             "us.anthropic.claude-sonnet-4-6")
    assert sonnet["models"] == [{"modelArn": "arn:aws:bedrock:us-east-1::foundation-model/"
                                             "anthropic.claude-sonnet-4-6"}]
    assert sonnet["inferenceProfileName"] and sonnet["description"]
    none = bedrock_client(gw, "bob@example.com").list_inference_profiles(typeEquals="APPLICATION")
    assert none["inferenceProfileSummaries"] == []
    status, headers, body = request(gw, "GET", "/bedrock/inference-profiles?type=OTHER")
    assert status == 400 and headers["x-amzn-errortype"] == "ValidationException"
    assert "OTHER" in json.loads(body)["message"]


# A head that breaks the HTTP rules after its path was read: on an API path,
# the answer is in that path's format and the request is captured; elsewhere
# it is a line of text. Each closes the connection.
BROKEN_HEADS = [
    # (request line and the headers after Host, status, shape, message)
    (b"POST /v1/messages HTTP/1.1\r\nHost: other", 400, "anthropic", "more than one Host header"),
    (b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: gzip, chunked", 501, "openai",
     "transfer coding gzip not supported (only chunked)"),
    (b"POST /v1beta/models/gemini-2.5-pro:generateContent HTTP/1.1\r\nExpect: later", 417,
     "google", "unsupported Expect header"),
    (b"POST /bedrock/model/us.anthropic.claude-sonnet-4-6/invoke HTTP/1.1\r\nHost: again", 400,
     "bedrock", "more than one Host header"),
    (b"GET /healthz HTTP/1.1\r\nHost: other", 400, "text", "more than one Host header"),
]


@pytest.mark.parametrize("head,status,shape,message", BROKEN_HEADS,
                         ids=[h[0].split(b" ")[1].decode() for h in BROKEN_HEADS])
def test_broken_heads_on_api_paths_are_answered_in_their_format_and_captured(
        gw, head, status, shape, message):
    import socket

    from tests.integration.test_capture import read_response

    since = time.time() - 0.001
    line, _, extra = head.partition(b"\r\n")
    framing = b"\r\n0\r\n\r\n" if b"chunked" in extra else b"Content-Length: 2\r\n\r\n{}"
    raw = (line + b"\r\nHost: ai\r\ntailscale-user-login: alice@example.com\r\n" + extra
           + b"\r\nContent-Type: application/json\r\n" + framing)
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(raw)
        resp = read_response(s)
        assert s.recv(100) == b""  # closed after the answer
    assert resp.status == status
    if shape == "text":
        assert resp.header("content-type") == "text/plain; charset=utf-8"
        assert resp.body == (message + "\n").encode()
        return
    doc = json.loads(resp.body)
    if shape == "anthropic":
        assert doc["type"] == "error" and doc["error"]["message"] == message
    elif shape == "openai":
        assert doc["error"]["message"] == message
    elif shape == "google":
        assert doc["error"]["code"] == status and doc["error"]["message"] == message
    else:
        assert doc == {"message": message}
    row, = records_since(gw, since, 1)
    path = line.split(b" ")[1].decode()
    assert (row["state"], row["status"], row["path"], row["error"], row["user"]) == (
        "refused", status, path, message, "alice@example.com")
