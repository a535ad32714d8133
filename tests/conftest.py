"""Shared test setup: a coroutine test runs in its own uvloop event loop, as the
gateway does (tests marked `anyio` are left to anyio's plugin)."""

from __future__ import annotations

import inspect

import pytest
import uvloop


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if inspect.iscoroutinefunction(pyfuncitem.obj) and not pyfuncitem.get_closest_marker("anyio"):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        uvloop.run(pyfuncitem.obj(**args))
        return True
    return None


@pytest.fixture
def anyio_backend():
    return "asyncio", {"use_uvloop": True}
