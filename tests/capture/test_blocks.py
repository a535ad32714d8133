import random

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aperture.capture import blocks
from aperture.capture.query import CaptureReader
from aperture.capture.store import CaptureStore

from .helpers import claude_code_bodies, make_record

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@SETTINGS
@given(st.binary(max_size=200_000))
def test_split_covers_the_body_within_bounds(body):
    parts = blocks.split(body)
    assert b"".join(parts) == body
    assert all(len(p) <= blocks.MAX_BLOCK for p in parts)
    assert all(len(p) >= blocks.MIN_BLOCK for p in parts[:-1])


def test_split_finds_the_same_blocks_after_an_insertion():
    rng = random.Random(5)
    items = [{"role": "user", "content": "x" * rng.randrange(10, 400) + str(i)}
             for i in range(600)]
    a = orjson.dumps(items)
    b = orjson.dumps(items[:50] + [{"role": "assistant", "content": "inserted"}] + items[50:])
    pa, pb = set(blocks.split(a)), set(blocks.split(b))
    shared = sum(len(p) for p in pa & pb)
    assert shared > 0.8 * len(a)


@SETTINGS
@given(st.lists(st.binary(max_size=30_000), min_size=1, max_size=4))
def test_bodies_round_trip_through_the_store(tmp_path_factory, bodies):
    d = tmp_path_factory.mktemp("store")
    store = CaptureStore(str(d), durable=False, batch_linger=0)
    try:
        recs = [make_record(request_body=b, response_body=b[::-1]) for b in bodies]
        for r in recs:
            store.submit(r)
        assert store.flush(10)
    finally:
        store.close()
    with CaptureReader(str(d)) as reader:
        for r in recs:
            got = reader.get(r.id)
            assert got["request_body"] == r.request_body
            assert got["response_body"] == r.response_body


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=2, max_value=12), st.integers(0, 10_000),
       st.binary(max_size=300))
def test_growing_conversations_round_trip(tmp_path_factory, turns, seed, junk):
    bodies = claude_code_bodies(turns, seed=seed)
    bodies = [b[:-1] + b',"x":"' + junk.hex().encode() + b'"}' for b in bodies]
    d = tmp_path_factory.mktemp("conv")
    store = CaptureStore(str(d), durable=False, batch_linger=0)
    try:
        recs = [make_record(request_body=b) for b in bodies]
        for r in recs:
            store.submit(r)
        assert store.flush(20)
    finally:
        store.close()
    with CaptureReader(str(d)) as reader:
        for r in recs:
            assert reader.get(r.id)["request_body"] == r.request_body


def test_a_fifty_turn_session_is_stored_in_a_fifth_of_its_bytes(tmp_path):
    bodies = claude_code_bodies(50)
    store = CaptureStore(str(tmp_path), durable=False)
    try:
        for b in bodies:
            store.submit(make_record(request_body=b, response_body=b""))
        assert store.flush(30)
        assert store.stats["bytes_blocks"] < sum(map(len, bodies)) / 5
    finally:
        store.close()


def test_non_utf8_and_empty_bodies(tmp_path):
    store = CaptureStore(str(tmp_path), durable=False)
    bodies = [b"", b"\xff\xfe\x00binary", bytes(range(256)) * 300]
    recs = [make_record(request_body=b, response_body=b) for b in bodies]
    for r in recs:
        store.submit(r)
    assert store.flush()
    store.close()
    with CaptureReader(str(tmp_path)) as reader:
        for r in recs:
            got = reader.get(r.id)
            assert got["request_body"] == r.request_body == got["response_body"]
