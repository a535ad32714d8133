"""Provider credentials: static keys and keys made by a command, refreshed."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from aperture.config import parse_config
from aperture.errors import BadGateway
from aperture.upstream import auth
from aperture.upstream.auth import PENDING, CommandKey, StaticKey, credential_for


def provider(**fields):
    import orjson

    raw = {"baseurl": "https://aiplatform.googleapis.com", "models": ["m"], **fields}
    return parse_config(orjson.dumps({"providers": {"v": raw}}).decode()).providers["v"]


def test_static_key_headers():
    assert StaticKey("bearer", "k").current() == (b"authorization", b"Bearer k")
    assert StaticKey("x-api-key", "k").current() == (b"x-api-key", b"k")
    assert StaticKey("x-goog-api-key", "k").current() == (b"x-goog-api-key", b"k")
    assert StaticKey("bearer", None).current() is None
    assert isinstance(credential_for(provider(apikey="k")), StaticKey)
    assert isinstance(credential_for(provider(apikey_command=["true"])), CommandKey)


def counter_command(tmp_path, fail_after: int | None = None) -> list[str]:
    """A command printing token-N, N counting its runs (failing after `fail_after`)."""
    script = tmp_path / "token.py"
    state = tmp_path / "runs"
    script.write_text(
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(state)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        f"if {fail_after!r} is not None and n > {fail_after!r}:\n"
        "    print('token service unavailable', file=sys.stderr); sys.exit(3)\n"
        "print(f'token-{n}')\n")
    return [sys.executable, str(script)]


async def test_command_key_is_fetched_once_then_refreshed_in_the_background(tmp_path, monkeypatch):
    key = CommandKey("vertex", tuple(counter_command(tmp_path)), 60.0, "bearer")
    assert key.current() is PENDING
    first, second = await asyncio.gather(key.fetch(), key.fetch())  # one run serves both
    assert first == second == (b"authorization", b"Bearer token-1")
    assert key.current() == first
    monkeypatch.setattr(auth.time, "monotonic", lambda: 61.0)
    key._fetched = key._tried = 0.0  # 61 s ago: stale, so the old token is used while
    # the new one is fetched
    assert key.current() == first
    await key._task
    assert key.current() == (b"authorization", b"Bearer token-2")


async def test_a_failing_command_keeps_the_last_token(tmp_path, monkeypatch, caplog):
    key = CommandKey("vertex", tuple(counter_command(tmp_path, fail_after=1)), 60.0, "bearer")
    good = await key.fetch()
    monkeypatch.setattr(auth.time, "monotonic", lambda: 1000.0)
    key._fetched = key._tried = 0.0  # fetched long ago: stale
    with caplog.at_level(logging.ERROR, logger="aperture.upstream"):
        assert key.current() == good
        await key._task
    assert key.current() == good
    assert "provider vertex: apikey_command failed: exit status 3: token service unavailable; " \
           "the previous token is used meanwhile" in caplog.text
    assert "token-" not in caplog.text  # never the output


async def test_no_token_at_all_is_a_502(tmp_path):
    key = CommandKey("vertex", (sys.executable, "-c", "import sys; sys.exit(1)"), 60.0, "bearer")
    with pytest.raises(BadGateway, match="no credential for provider vertex: apikey_command failed "
                                         r"\(exit status 1\)"):
        await key.fetch()
    # Tried just now: the next request fails at once rather than running it again.
    with pytest.raises(BadGateway):
        key.current()
    missing = CommandKey("v", ("/nonexistent/print-token",), 60.0, "bearer")
    with pytest.raises(BadGateway, match="cannot run /nonexistent/print-token"):
        await missing.fetch()
    junk = CommandKey("v", (sys.executable, "-c", "print('two words')"), 60.0, "x-goog-api-key")
    with pytest.raises(BadGateway, match="not one line of printable ASCII"):
        await junk.fetch()
