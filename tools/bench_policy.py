"""Measure the grant check: cached and uncached decisions, in µs per check.

    python tools/bench_policy.py [--grants 50] [--n 200000]

The policy has `--grants` grants of mixed forms (logins, groups, tags, `*`,
legacy temp_grants) over a few providers. Figures:

* cached: the same few (identity, provider, model) triples checked over and
  over, as on a keep-alive connection; the budget is 5 µs (DESIGN.md).
* decision miss: a new model each time for an identity already seen (the
  identity's access is cached, the decision is not).
* cold: a new identity each time (its grants are matched from scratch).
"""

from __future__ import annotations

import argparse
import time

from aperture.identity import Identity
from aperture.policy import Policy

CAP = "tailscale.com/cap/aperture"


def build_document(n_grants: int) -> dict:
    grants = [
        {"src": ["admin@example.com"], "app": {CAP: [{"role": "admin"}, {"models": "**"}]}},
        {"src": ["*"], "app": {CAP: [{"role": "user"}, {"models": "*/claude-sonnet*"}]}},
    ]
    for i in range(n_grants - 2):
        kind = i % 4
        if kind == 0:
            src = [f"user{i}@example.com", f"other{i}@example.com"]
        elif kind == 1:
            src = [f"group:team-{i}"]
        elif kind == 2:
            src = [f"tag:svc-{i}"]
        else:
            src = [f"sales{i}@example.com"]
        grants.append({"src": src, "app": {CAP: [{"role": "user"}, {"models": [f"openai/gpt-{i}*", f"team{i}/**"]},
                                                  {"quotas": [{"bucket": f"b{i}"}]}]}})
    temp = [{"src": ["group:team-1"], "grants": [{"providers": [{"provider": "openrouter", "model": "qwen/*"}]}]}]
    return {"grants": grants, "temp_grants": temp}


def per_op_us(fn, n: int) -> float:
    start = time.perf_counter_ns()
    fn(n)
    return (time.perf_counter_ns() - start) / n / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grants", type=int, default=50)
    ap.add_argument("--n", type=int, default=200_000)
    args = ap.parse_args()

    doc = build_document(args.grants)
    t0 = time.perf_counter()
    policy = Policy.compile(doc)
    compile_ms = (time.perf_counter() - t0) * 1000

    users = [
        Identity(login="user5@example.com", display_name="U5", node_name="n", node_id="nX", groups=("group:team-1",),
                 source="tailscale"),
        Identity(login="", tags=("tag:svc-2",), node_name="ci", node_id="nCI", source="tailscale"),
        Identity(login="admin@example.com", source="tailscale"),
    ]
    triples = [(users[0], "anthropic", "claude-sonnet-4-6"), (users[1], "openai", "gpt-2-mini"),
               (users[2], "anthropic", "claude-opus-4-7"), (users[0], "openrouter", "qwen/qwen3-coder")]

    def cached(n: int) -> None:
        check = policy.check
        k = len(triples)
        for i in range(n):
            ident, prov, model = triples[i % k]
            check(ident, prov, model)

    for t in triples:  # warm
        policy.check(*t)

    models = [f"model-{i}" for i in range(args.n // 10 + 1)]

    def miss(n: int) -> None:
        p = Policy.compile(doc)
        p.access(users[0])
        for i in range(n):
            p.check(users[0], "anthropic", models[i % len(models)])

    idents = [Identity(login=f"someone{i}@example.com", groups=("group:team-5",)) for i in range(args.n // 10 + 1)]

    def cold(n: int) -> None:
        p = Policy.compile(doc)
        for i in range(n):
            p.check(idents[i % len(idents)], "anthropic", "claude-sonnet-4-6")

    loop_only = per_op_us(lambda n: [triples[i % len(triples)] for i in range(n)], args.n)
    results = {
        "cached": per_op_us(cached, args.n),
        "decision miss": per_op_us(miss, len(models)),
        "cold identity": per_op_us(cold, len(idents)),
    }
    print(f"policy: {args.grants} grants, compiled in {compile_ms:.2f} ms")
    for name, us in results.items():
        print(f"  {name:14s} {us:7.3f} µs/check")
    print(f"  (benchmark loop overhead ~{loop_only:.3f} µs/op included in 'cached'; budget 5 µs)")


if __name__ == "__main__":
    main()
