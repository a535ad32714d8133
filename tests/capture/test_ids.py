import multiprocessing
import time

import pytest

from aperture.ids import ALPHABET, ID_LENGTH, id_floor, id_time, new_id


def test_ids_are_url_safe_and_sized():
    i = new_id()
    assert len(i) == ID_LENGTH == 26
    assert set(i) <= set(ALPHABET)


def test_ids_in_one_process_strictly_increase():
    ids = [new_id() for _ in range(20000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_id_time_is_creation_time_to_the_millisecond():
    before = time.time()
    i = new_id()
    after = time.time()
    assert before - 0.002 <= id_time(i) <= after + 0.002


def test_lexicographic_order_follows_milliseconds():
    a = new_id()
    time.sleep(0.003)
    b = new_id()
    assert a < b
    assert id_time(a) < id_time(b)


def test_id_floor_sorts_before_ids_of_that_time():
    t = time.time()
    i = new_id()
    assert id_floor(t - 0.001) < i
    assert id_floor(t + 1) > i
    assert id_time(id_floor(1234.5)) == 1234.5


@pytest.mark.parametrize("bad", ["", "short", "!!!!!!!!!!!!!!!!!!!!!!!!!!"])
def test_id_time_rejects_garbage(bad):
    with pytest.raises(ValueError):
        id_time(bad)


def _make_ids(n, q):
    q.put([new_id() for _ in range(n)])


def test_ids_unique_across_processes():
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_make_ids, args=(5000, q)) for _ in range(4)]
    for p in procs:
        p.start()
    ids = []
    for _ in procs:
        ids.extend(q.get(timeout=30))
    for p in procs:
        p.join(10)
    ids.extend(new_id() for _ in range(5000))
    assert len(set(ids)) == len(ids) == 25000
