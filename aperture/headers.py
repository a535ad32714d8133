"""Header manners of a proxy (STYLE.md, "Proxy manners"; RFC 9110 §7.6.1).

Hop-by-hop headers are dropped in both directions, and so is every header that
`Connection` names. Towards the upstream, framing is recomputed, the client's
`Host` is replaced, identity headers and client-sent `X-Forwarded-*` are not
trusted, and credentials follow the provider's `auth_mode`. In records,
credentials are replaced by a mask.
"""

from __future__ import annotations

from aperture.identity.sources import IDENTITY_HEADERS  # set by `tailscale serve`; never forwarded
from aperture.upstream.auth import CREDENTIAL_HEADERS as CREDENTIALS
from aperture.upstream.auth import MASK

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
    b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
#: headers whose values are never written to a record
_SECRET_IN_RECORDS = CREDENTIALS | {b"proxy-authorization", b"cookie", b"set-cookie"}

# Request headers the gateway sets itself or must not pass on.
_NOT_FORWARDED_UP = HOP_BY_HOP | IDENTITY_HEADERS | {b"host", b"content-length", b"expect"}


def connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return frozenset(tokens)


# A client header whose name is in none of these, has no "_" and does not
# start with "x-forwarded-" goes upstream as it is (the fast path).
_LOOK_UP = _NOT_FORWARDED_UP | CREDENTIALS | {b"accept-encoding"}


def upstream_request_headers(client: list[tuple[bytes, bytes]], *, host: bytes, auth_mode: str,
                             key: tuple[bytes, bytes] | None,
                             named: frozenset[bytes] | None = None) -> list[tuple[bytes, bytes]]:
    """The headers sent upstream for a client request (without framing
    headers); `key` is the provider's credential header (upstream.auth).
    Names come lowercased (the ingress lowercases them). `named`: the tokens
    of the client's Connection header, found when one is met (the headers it
    names are hop-by-hop too)."""
    look_up = _LOOK_UP if named is None else _LOOK_UP | named
    out: list[tuple[bytes, bytes]] = [(b"host", host)]
    append = out.append
    client_sent_credentials = False
    for item in client:
        name = item[0]
        if name not in look_up and b"_" not in name and not name.startswith(b"x-forwarded-"):
            append(item)
            continue
        if name == b"connection" and named is None:
            return upstream_request_headers(client, host=host, auth_mode=auth_mode, key=key,
                                            named=connection_tokens(client))
        if (name in _NOT_FORWARDED_UP or (named is not None and name in named)
                or name.startswith(b"x-forwarded-")
                or (b"_" in name and name.replace(b"_", b"-") in _NOT_FORWARDED_UP)):
            if name == b"te" and item[1].strip().lower() == b"trailers":
                append(item)
            continue
        if name in CREDENTIALS:
            client_sent_credentials = True
            if auth_mode != "passthrough":
                continue
        if name == b"accept-encoding":
            # Usage is read off the response bytes: ask for them uncompressed.
            continue
        append(item)
    append((b"accept-encoding", b"identity"))
    if key is not None and (auth_mode == "override"
                            or (auth_mode == "passthrough" and not client_sent_credentials)):
        append(key)
    return out


# Response headers the gateway sets itself (framing) or must drop.
_NOT_FORWARDED_DOWN = HOP_BY_HOP | {b"content-length"}


def client_response_headers(upstream: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    named = connection_tokens(upstream)
    return [(n, v) for n, v in upstream if n not in _NOT_FORWARDED_DOWN and n not in named]


_MASK_BYTES = MASK.encode("ascii")


def for_journal(headers) -> str | tuple[tuple[str, str], ...]:
    """The headers of a record as a journal frame carries them: names and
    values in one string, each followed by a NUL, credentials masked. It is
    for_record's result at about half its cost (no tuple per header), and
    the capture writer splits it back (`journal_pairs`). Headers that are
    not bytes, or that hold a NUL, come as for_record's pairs."""
    flat = []
    append = flat.append
    try:
        for name, value in headers:
            name = name.lower()
            append(name)
            append(_MASK_BYTES if name in _SECRET_IN_RECORDS else value)
        append(b"")
        text = b"\0".join(flat).decode("latin-1")
    except TypeError:  # str pairs, or memoryviews
        return for_record(headers)
    if text.count("\0") != len(flat) - 1:
        return for_record(headers)
    return text


def journal_pairs(headers) -> list | tuple:
    """Headers from a journal frame as for_record gives them: for_journal's
    string split back into (name, value) pairs; pairs are returned as they are."""
    if type(headers) is not str:
        return headers
    flat = headers.split("\0")
    return tuple(zip(flat[0:-1:2], flat[1:-1:2]))


def for_record(headers) -> tuple[tuple[str, str], ...]:
    """Headers as stored in a capture: decoded, credentials masked. Takes the
    (bytes, bytes) pairs of the wire, or (str, str) pairs already decoded."""
    out = []
    for name, value in headers:
        if type(name) is str:
            lower = name.lower()
            secret = lower.encode("latin-1", "replace") in _SECRET_IN_RECORDS
            out.append((lower, MASK if secret else value))
            continue
        name = bytes(name).lower()
        text = MASK if name in _SECRET_IN_RECORDS else bytes(value).decode("latin-1")
        out.append((name.decode("latin-1"), text))
    return tuple(out)
