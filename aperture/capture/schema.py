"""The layout of the capture store in LMDB, and the one place that opens it.

One environment, `<data_dir>/captures.lmdb`, with these sub-databases (keys are
bytes; `ts` is the record's start time as 8 bytes big-endian microseconds, so
keys sort by time; `id` is the 26-character record id):

    rec    ts id                    -> record summary (orjson list, see codec)
    ids    id                       -> ts              (id lookups, replay dedup)
    cap    id                       -> capture content (headers, body refs)
    tools  id                       -> tool calls with arguments (orjson)
    ix_u   user \\0 ts id            -> ""             (index by user)
    ix_m   model \\0 ts id           -> ""             (index by model)
    ix_p   provider \\0 ts id        -> ""             (index by provider)
    ix_s   session \\0 ts id         -> ""             (index by session)
    ses    session                  -> session totals (orjson)
    ses_t  last_ts session          -> ""             (sessions by last activity)
    ses_u  user \\0 last_ts session  -> ""             (a user's sessions)
    conv   hash(user, messages[:k]) -> session        (conversation lookup)
    resp   response id              -> [provider, model, user, session, time]
                                                      (Responses API ids, see aperture.responses)
    resp_t ts response id           -> ""             (response ids by age, for purge)
    blk    hash(block)              -> stored block   (content-addressed bodies)
    blkh   hash(block)              -> u32 hour of the newest record using it
    blka   u32 hour, hash(block)    -> ""             (blocks by age, for purge)
    roll   dim level u32 bucket value -> totals       (hourly and daily rollups; dims
                                                      below, values as rollup_values reads them)
    meta   name                     -> value          (schema version, purge mark)

Every process of the gateway opens the environment once (LMDB must not be
opened twice in one process: `open_env` keeps one handle per path and counts
its users). The map grows when full; a process that sees another process's
larger map adopts it (`MapResizedError` -> `set_mapsize(0)`). Growing the map
needs no open transaction in this process, so readers in this process pass
through a gate that the resize waits on.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Iterator

import lmdb

DB_NAMES = ("rec", "ids", "cap", "tools", "ix_u", "ix_m", "ix_p", "ix_s", "ses", "ses_t",
            "ses_u", "conv", "resp", "resp_t", "blk", "blkh", "blka", "roll", "meta")
SCHEMA_VERSION = b"1"
ENV_DIRNAME = "captures.lmdb"
DEFAULT_MAP_SIZE = 1 << 30
MAX_MAP_SIZE = 1 << 44
SEP = b"\x00"
KEY_FIELD_MAX = 200  # bytes of a user/model/provider/session kept in index keys

class StoreError(OSError):
    """The capture store cannot be opened or read (lmdb errors, translated)."""


_TS = struct.Struct(">Q")
_U32 = struct.Struct(">I")
pack_u32 = _U32.pack
unpack_u32 = _U32.unpack


_pack_ts = _TS.pack


def ts_bytes(t: float) -> bytes:
    """8-byte big-endian microseconds; negative times clamp to 0."""
    us = int(t * 1_000_000)
    return _pack_ts(us if us > 0 else 0)


def ts_value(b: bytes) -> float:
    return _TS.unpack(b[:8])[0] / 1_000_000


_key_cache: dict[str, bytes] = {}


def key_field(value: str) -> bytes:
    """A string as used inside index keys: UTF-8, no NUL, bounded length."""
    b = _key_cache.get(value)
    if b is not None:
        return b
    b = value.encode("utf-8", "surrogatepass")
    if SEP in b:
        b = b.replace(SEP, b"?")
    b = b[:KEY_FIELD_MAX]
    if len(_key_cache) > 4096:
        _key_cache.clear()
    _key_cache[value] = b
    return b


class EnvHandle:
    """One open environment shared by everything in this process."""

    def __init__(self, path: str, env: lmdb.Environment, readonly: bool) -> None:
        self.path = path
        self.env = env
        self.readonly = readonly
        self.dbs: dict[str, object] = {}
        self.users = 0
        self._cond = threading.Condition()
        self._readers = 0
        self._resizing = False

    # -- transactions -------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        """A read-only transaction (adopting a map grown by another process)."""
        self._enter()
        try:
            try:
                txn = self.env.begin(write=False, buffers=False)
            except lmdb.MapResizedError:
                self._leave()
                self.adopt_map_size()
                self._enter()
                txn = self.env.begin(write=False, buffers=False)
            try:
                yield txn
            except lmdb.Error as e:
                raise StoreError(f"capture store {self.path}: {e}") from e
            finally:
                txn.abort()
        except lmdb.Error as e:
            raise StoreError(f"capture store {self.path}: {e}") from e
        finally:
            self._leave()

    def _enter(self) -> None:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._readers += 1

    def _leave(self) -> None:
        with self._cond:
            self._readers -= 1
            self._cond.notify_all()

    def _exclusive(self, fn) -> None:
        with self._cond:
            while self._resizing or self._readers:
                self._cond.wait()
            self._resizing = True
        try:
            fn()
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()

    def adopt_map_size(self) -> None:
        self._exclusive(lambda: self.env.set_mapsize(0))

    def grow(self) -> int:
        """Double the map size (after MapFullError). Returns the new size."""
        new = [0]

        def do() -> None:
            size = self.env.info()["map_size"]
            new[0] = min(MAX_MAP_SIZE, max(size * 2, size + (64 << 20)))
            self.env.set_mapsize(new[0])
        self._exclusive(do)
        return new[0]

    def db(self, name: str):
        return self.dbs.get(name)


_registry: dict[str, EnvHandle] = {}
_registry_lock = threading.Lock()


def env_path(data_dir: str) -> str:
    return os.path.join(os.path.realpath(data_dir), ENV_DIRNAME)


def open_env(data_dir: str, *, readonly: bool = False, map_size: int = DEFAULT_MAP_SIZE,
             durable: bool = True) -> EnvHandle | None:
    """The process-wide handle on the store under `data_dir`.

    A read-only open of a store that does not exist returns None. Opening for
    writing creates the directory and every sub-database.
    """
    try:
        return _open_env(data_dir, readonly, map_size, durable)
    except lmdb.Error as e:
        raise StoreError(f"cannot open the capture store in {data_dir}: {e}") from e


def _open_env(data_dir: str, readonly: bool, map_size: int, durable: bool) -> EnvHandle | None:
    path = env_path(data_dir)
    with _registry_lock:
        handle = _registry.get(path)
        if handle is not None and not (handle.readonly and not readonly):
            handle.users += 1
            return handle
        if handle is not None:
            raise RuntimeError(f"{path} is already open read-only in this process")
        if readonly:
            if not os.path.exists(os.path.join(path, "data.mdb")):
                return None
            env = lmdb.open(path, subdir=True, readonly=True, create=False, lock=True,
                            max_dbs=len(DB_NAMES) + 4, max_readers=1024, readahead=False)
        else:
            os.makedirs(path, exist_ok=True)
            env = lmdb.open(path, subdir=True, map_size=map_size, max_dbs=len(DB_NAMES) + 4,
                            max_readers=1024, readahead=False, metasync=False, sync=durable,
                            lock=True)
        handle = EnvHandle(path, env, readonly)
        try:
            if readonly:
                _open_dbs(handle)
            else:
                _create_dbs(handle)
        except BaseException:
            env.close()
            raise
        handle.users = 1
        _registry[path] = handle
        return handle


def _open_dbs(handle: EnvHandle) -> None:
    """Read-only: the sub-databases that exist. A writer in another process
    may grow the map between the open and here: adopt its size, as
    `_create_dbs` does."""
    while True:
        try:
            for name in DB_NAMES:
                try:
                    handle.dbs[name] = handle.env.open_db(name.encode(), create=False)
                except lmdb.NotFoundError:
                    pass
            return
        except lmdb.MapResizedError:
            handle.env.set_mapsize(0)


def _create_dbs(handle: EnvHandle) -> None:
    while True:
        try:
            with handle.env.begin(write=True) as txn:
                for name in DB_NAMES:
                    handle.dbs[name] = handle.env.open_db(name.encode(), txn=txn, create=True)
                meta = handle.dbs["meta"]
                if txn.get(b"schema", db=meta) is None:
                    txn.put(b"schema", SCHEMA_VERSION, db=meta)
            return
        except lmdb.MapResizedError:
            handle.env.set_mapsize(0)


def release_env(handle: EnvHandle) -> None:
    with _registry_lock:
        handle.users -= 1
        if handle.users <= 0:
            _registry.pop(handle.path, None)
            handle.env.close()


#: rollup figures: requests, five token kinds, tool calls, duration in
#: microseconds, estimated cost in nano-dollars, requests without a price
ROLL_FIGURES = 10
ROLL = struct.Struct("<10q")
_ROLL_V1 = struct.Struct("<8q")  # before costs: no cost, every request unpriced


def rollup_values(value: bytes) -> list[int]:
    """The ROLL_FIGURES figures of a stored rollup value (of either layout)."""
    if len(value) == _ROLL_V1.size:
        v = list(_ROLL_V1.unpack(value))
        return v + [0, v[0]]
    return list(ROLL.unpack(value))


# Rollup dimensions (the first byte of a `roll` key): totals, user, model,
# provider, tool name, and the combinations the dashboard filters on:
# (user, provider, model) and (user, provider, model, tool), their fields
# cut to COMBO_CAPS bytes and joined with SEP (LMDB keys are at most 511 bytes).
DIM_TOTAL, DIM_USER, DIM_MODEL, DIM_PROVIDER, DIM_TOOL = b"T", b"U", b"M", b"P", b"X"
DIM_COMBO, DIM_TOOL_COMBO = b"C", b"Y"
COMBO_CAPS = (160, 64, 160, 96)  # user, provider, model, tool


def combo_field(value: str, i: int) -> bytes:
    return key_field(value)[:COMBO_CAPS[i]]


def combo_key(*fields: str) -> bytes:
    """user, provider, model[, tool] as one rollup key value."""
    return SEP.join(combo_field(v, i) for i, v in enumerate(fields))


def add_counts(acc: dict, key, vals) -> None:
    """Add the rollup figures `vals` (ROLL_FIGURES of them, or the first 8)
    into `acc[key]`, creating it on first use."""
    a = acc.get(key)
    if a is None:
        a = acc[key] = list(vals)
        if len(a) < ROLL_FIGURES:
            a += [0, a[0]] if len(a) == 8 else [0] * (ROLL_FIGURES - len(a))
    else:
        for i in range(len(vals)):
            a[i] += vals[i]
        if len(vals) == 8:
            a[9] += vals[0]
