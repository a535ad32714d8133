"""Proxy header manners: hop-by-hop, credentials per auth_mode, identity headers, records."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aperture.headers import (MASK, client_response_headers, for_journal, for_record, journal_pairs,
                              upstream_request_headers)
from aperture.upstream.auth import drop_query_credentials, key_header, scrub_query

CLIENT = [
    (b"host", b"ai"),
    (b"content-type", b"application/json"),
    (b"content-length", b"12"),
    (b"connection", b"keep-alive, x-private-hop"),
    (b"x-private-hop", b"1"),
    (b"keep-alive", b"timeout=5"),
    (b"te", b"trailers"),
    (b"transfer-encoding", b"chunked"),
    (b"proxy-authorization", b"Basic abc"),
    (b"upgrade", b"h2c"),
    (b"expect", b"100-continue"),
    (b"accept-encoding", b"gzip, br"),
    (b"x-forwarded-for", b"6.6.6.6"),
    (b"tailscale-user-login", b"mallory@example.com"),
    (b"anthropic-version", b"2023-06-01"),
    (b"anthropic-beta", b"a,b"),
    (b"authorization", b"Bearer client-token"),
    (b"x-api-key", b"client-key"),
]


def names(headers):
    return [n for n, _ in headers]


def test_override_replaces_client_credentials():
    out = upstream_request_headers(CLIENT, host=b"api.example.com", auth_mode="override",
                                   key=key_header("x-api-key", "sk-provider"))
    d = dict(out)
    assert d[b"host"] == b"api.example.com"
    assert d[b"x-api-key"] == b"sk-provider"
    assert b"authorization" not in d
    assert names(out).count(b"x-api-key") == 1
    assert d[b"anthropic-version"] == b"2023-06-01" and d[b"anthropic-beta"] == b"a,b"
    assert d[b"te"] == b"trailers"
    assert d[b"accept-encoding"] == b"identity"
    for dropped in (b"connection", b"x-private-hop", b"keep-alive", b"transfer-encoding",
                    b"proxy-authorization", b"upgrade", b"expect", b"content-length",
                    b"x-forwarded-for", b"tailscale-user-login"):
        assert dropped not in d, dropped


def test_override_bearer_format():
    out = dict(upstream_request_headers([(b"x-api-key", b"c")], host=b"h", auth_mode="override",
                                        key=key_header("bearer", "sk-1")))
    assert out[b"authorization"] == b"Bearer sk-1" and b"x-api-key" not in out


def test_goog_key():
    out = dict(upstream_request_headers([], host=b"h", auth_mode="override",
                                        key=key_header("x-goog-api-key", "g-1")))
    assert out[b"x-goog-api-key"] == b"g-1"


def test_passthrough_forwards_client_credentials_unchanged():
    out = upstream_request_headers(CLIENT, host=b"h", auth_mode="passthrough",
                                   key=key_header("x-api-key", "sk-fallback"))
    d = dict(out)
    assert d[b"authorization"] == b"Bearer client-token"
    assert d[b"x-api-key"] == b"client-key"
    assert b"sk-fallback" not in b"".join(v for _, v in out)


def test_passthrough_falls_back_to_provider_key():
    out = dict(upstream_request_headers([(b"content-type", b"application/json")], host=b"h",
                                        auth_mode="passthrough", key=key_header("x-api-key", "sk-fallback")))
    assert out[b"x-api-key"] == b"sk-fallback"


def test_none_sends_no_credentials():
    out = dict(upstream_request_headers(CLIENT, host=b"h", auth_mode="none",
                                        key=key_header("bearer", "sk-unused")))
    assert not {b"authorization", b"x-api-key", b"x-goog-api-key"} & out.keys()


def test_response_headers_drop_hop_by_hop_and_framing():
    upstream = [(b"content-type", b"text/event-stream"), (b"transfer-encoding", b"chunked"),
                (b"content-length", b"5"), (b"connection", b"close, x-hop"), (b"x-hop", b"1"),
                (b"request-id", b"req_1"), (b"keep-alive", b"timeout=5")]
    assert client_response_headers(upstream) == [(b"content-type", b"text/event-stream"),
                                                 (b"request-id", b"req_1")]


def test_lookalikes_of_framing_headers_are_not_forwarded():
    """`Transfer_Encoding` is no framing header to aperture, but a server that
    reads `_` as `-` would take it for one."""
    out = dict(upstream_request_headers(
        [(b"transfer_encoding", b"chunked"), (b"content_length", b"5"), (b"session_id", b"s-1"),
         (b"x_custom", b"kept")], host=b"h", auth_mode="none", key=None))
    assert b"transfer_encoding" not in out and b"content_length" not in out
    assert out[b"session_id"] == b"s-1" and out[b"x_custom"] == b"kept"


SIGV4 = [(b"authorization", b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock"),
         (b"x-amz-date", b"20260101T000000Z"), (b"x-amz-security-token", b"session-token"),
         (b"x-amz-content-sha256", b"e3b0c442"), (b"x-amzn-bedrock-service-tier", b"priority")]


def test_override_drops_a_client_sigv4_signature():
    out = dict(upstream_request_headers(SIGV4, host=b"h", auth_mode="override",
                                        key=key_header("bearer", "bedrock-key")))
    assert out[b"authorization"] == b"Bearer bedrock-key"
    assert not {b"x-amz-date", b"x-amz-security-token", b"x-amz-content-sha256"} & out.keys()
    assert out[b"x-amzn-bedrock-service-tier"] == b"priority"


def test_passthrough_keeps_a_client_sigv4_signature():
    out = upstream_request_headers(SIGV4, host=b"h", auth_mode="passthrough",
                                   key=key_header("bearer", "bedrock-key"))
    assert [v for n, v in out if n == b"authorization"] == [SIGV4[0][1]]
    assert dict(out)[b"x-amz-security-token"] == b"session-token"


@pytest.mark.parametrize("query, scrubbed, dropped", [
    ("key=AIza-secret", "key=[removed]", ""),
    ("alt=sse&key=AIza-secret", "alt=sse&key=[removed]", "alt=sse"),
    ("KEY=x&alt=sse&key=y", "KEY=[removed]&alt=sse&key=[removed]", "alt=sse"),
    ("alt=sse&monkey=1&keys=2", "alt=sse&monkey=1&keys=2", "alt=sse&monkey=1&keys=2"),
    ("key", "key=[removed]", ""),
    ("", "", ""),
])
def test_query_secrets(query, scrubbed, dropped):
    assert scrub_query(query) == scrubbed
    assert drop_query_credentials(query) == dropped


@pytest.mark.parametrize("name", [b"authorization", b"x-api-key", b"x-goog-api-key", b"cookie",
                                  b"set-cookie", b"proxy-authorization", b"x-amz-security-token"])
def test_records_never_hold_credentials(name):
    for wire in ([(name, b"secret-value"), (b"content-type", b"application/json")],
                 [(name.upper(), b"secret-value"), (b"Content-Type", b"application/json")]):
        assert "secret" not in for_journal(wire)  # what a journal frame holds
        for rec in (dict(for_record(wire)), dict(journal_pairs(for_journal(wire)))):
            assert rec[name.decode()] == MASK
            assert rec["content-type"] == "application/json"


@pytest.mark.parametrize("headers", [
    [],
    [(b"content-type", b"application/json"), (b"X-Request-Id", b"r1"), (b"empty", b"")],
    [(b"x-latin", "caf\u00e9 \u00ff".encode("latin-1")), (b"x-api-key", b"k")],
    [(b"x-nul", b"a\0b"), (b"authorization", b"Bearer t")],  # not splittable: pairs
    [("content-type", "text/plain"), ("Cookie", "c=1")],  # already decoded: pairs
    [(bytearray(b"x-a"), memoryview(b"1"))],
])
def test_journal_headers_are_the_record_headers(headers):
    """for_journal's compact form, split back by the capture writer, is
    exactly what for_record gives."""
    compact = for_journal(headers)
    if any(b"\0" in v for _, v in headers if isinstance(v, bytes)) or \
            any(type(n) is not bytes for n, _ in headers):
        assert type(compact) is tuple
    else:
        assert type(compact) is str
    assert journal_pairs(compact) == for_record(headers)


# ---------------------------------------------------------------------------
# upstream_request_headers against a plain reading of its rules: every header
# checked against every rule, the Connection tokens found first.

def _reference_upstream_headers(client, *, host, auth_mode, key):
    from aperture.headers import _NOT_FORWARDED_UP, connection_tokens
    from aperture.upstream.auth import CREDENTIAL_HEADERS

    named = connection_tokens(client)
    out = [(b"host", host)]
    sent_credentials = False
    for name, value in client:
        if (name in _NOT_FORWARDED_UP or name in named or name.startswith(b"x-forwarded-")
                or (b"_" in name and name.replace(b"_", b"-") in _NOT_FORWARDED_UP)):
            if name == b"te" and value.strip().lower() == b"trailers":
                out.append((name, value))
            continue
        if name in CREDENTIAL_HEADERS:
            sent_credentials = True
            if auth_mode != "passthrough":
                continue
        if name != b"accept-encoding":
            out.append((name, value))
    out.append((b"accept-encoding", b"identity"))
    if key is not None and (auth_mode == "override"
                            or (auth_mode == "passthrough" and not sent_credentials)):
        out.append(key)
    return out


_NAMES = [b"host", b"connection", b"te", b"keep-alive", b"upgrade", b"transfer-encoding",
          b"x-forwarded-for", b"x_forwarded_for", b"content_length", b"x-api-key", b"x_api_key",
          b"authorization", b"accept-encoding", b"content-type", b"anthropic-version",
          b"x-custom", b"tailscale-user-login", b"expect", b"content-length", b"cookie"]
_VALUES = [b"", b"trailers", b" Trailers ", b"x-custom", b"x-api-key, te", b"keep-alive, x-custom",
           b"gzip", b"v"]


@settings(max_examples=400, deadline=None)
@given(client=st.lists(st.tuples(st.sampled_from(_NAMES), st.sampled_from(_VALUES)), max_size=10),
       auth_mode=st.sampled_from(["override", "passthrough", "none"]),
       key=st.sampled_from([None, (b"x-api-key", b"sk"), (b"authorization", b"Bearer k")]))
def test_upstream_headers_follow_every_rule(client, auth_mode, key):
    assert upstream_request_headers(client, host=b"up", auth_mode=auth_mode, key=key) == \
        _reference_upstream_headers(client, host=b"up", auth_mode=auth_mode, key=key)
