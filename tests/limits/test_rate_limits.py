"""Rate limits: `rateLimit: {key, rate, per, burst}` is a token bucket in a row. Nodes beyond
the burst are parked, each until the token it was promised (a visible time, no worker sleeping
or polling for it); maxWait fails at once a node that would wait longer. Driven by a manual
clock: nothing here waits in real time for a token."""

from __future__ import annotations

from df_it_support import call, py, wait_until, wf

from durableflow.clock import iso

PARKED = 3
RATE = {"key": "partner-api", "rate": 1, "per": "10s", "burst": 2}


def parked(sql) -> list[tuple]:
    return sql.rows("SELECT m.run_id, m.visible_at, n.waiting_reason FROM messages m "
                    "JOIN node_instances n ON n.message_id = m.id AND n.status = 'waiting' "
                    "WHERE m.status = 'ready' AND m.held = ? ORDER BY m.visible_at", PARKED)


def completed(engine, ids) -> int:
    return sum(engine.get_run(r).status == "completed" for r in ids)


def test_a_burst_runs_at_once_and_the_rest_wait_each_for_its_own_token(engine, sql, clock):
    t0 = clock.now()
    defn = wf("hits", py("hit", "output = ctx.run_id", rateLimit=RATE))
    ids = [engine.start(defn) for _ in range(5)]
    with engine.worker(concurrency=4):
        wait_until(lambda: completed(engine, ids) == 2, what="the burst of two to run")
        waits = wait_until(lambda: len(parked(sql)) == 3 and parked(sql), what="three nodes parked")
        # Promised in order, one per period: +10 s, +20 s, +30 s (a millisecond late, never early).
        expected = [iso(t0 + 10 * k + 0.001) for k in (1, 2, 3)]
        assert [w[1] for w in waits] == expected
        assert [w[2] for w in waits] == [f"rateLimit 'partner-api': its token comes at {t}" for t in expected]
        assert [w[0] for w in waits] == ids[2:]
        for k in (3, 4, 5):
            assert completed(engine, ids) == k - 1
            clock.advance(10.002)
            wait_until(lambda: completed(engine, ids) == k, what=f"run {k} after its token")
    starts = sql.rows("SELECT run_id, started_at FROM node_instances WHERE status = 'completed' "
                      "ORDER BY started_at, id")
    assert [s[0] for s in starts] == ids
    # Each parked message was leased twice, once to park it and once to run it: nobody polled.
    for run_id in ids[2:]:
        leased = [e for e in engine.events(run_id) if e["type"] == "message.leased"]
        assert len(leased) == 2, leased


def test_the_bucket_is_a_row_and_refills_up_to_its_burst(engine, sql, clock):
    defn = wf("hits-row", py("hit", rateLimit=RATE))
    assert engine.execute(defn, timeout=15).status == "completed"
    tokens, rate, per, burst = sql.one("SELECT tokens, rate, per_s, burst FROM rate_limits "
                                       "WHERE key = 'partner-api'")
    assert (tokens, rate, per, burst) == (1.0, 1.0, 10.0, 2.0)
    clock.advance(3600)      # an hour of refill still holds only `burst` tokens
    ids = [engine.start(defn) for _ in range(3)]
    with engine.worker(concurrency=4):
        wait_until(lambda: completed(engine, ids) == 2 and len(parked(sql)) == 1, what="burst, then a wait")


def test_a_node_that_would_wait_past_max_wait_fails_at_once(engine, sql, clock):
    defn = wf("impatient", py("hit", rateLimit={"key": "slow", "rate": 1, "per": "1m"}, maxWait="10s",
                              retry={"strategy": "fixed", "maxAttempts": 3, "initialDelay": 0}))
    first = engine.execute(defn, timeout=15)
    assert first.status == "completed"
    second = engine.execute(defn, timeout=15)
    assert second.status == "failed"
    node = second.node("hit")
    assert node.error_type == "LimitTimeout"
    assert "maxWait 10s" in node.error and "'slow'" in node.error
    assert len(sql.rows("SELECT 1 FROM node_instances WHERE run_id = ?", second.run_id)) == 1   # no retry


def test_a_retry_pays_for_a_token_again(engine, hooks, sql, clock):
    t0 = clock.now()
    defn = wf("retry-pays", call("hit", "flaky", rateLimit={"key": "once", "rate": 1, "per": "10s"},
                                 retry={"strategy": "fixed", "maxAttempts": 2, "initialDelay": 0}))
    run_id = engine.start(defn, {"succeedOn": 2})
    with engine.worker(concurrency=1):
        wait_until(lambda: parked(sql), what="the retry to wait for a token")
        assert hooks.calls["flaky:hit"] == [1]
        clock.advance(10.002)
        assert engine.wait(run_id, timeout=15).status == "completed"
    assert hooks.calls["flaky:hit"] == [1, 2]
    second = sql.one("SELECT started_at FROM node_instances WHERE run_id = ? AND attempt = 2", run_id)
    assert second >= iso(t0 + 10)


def test_tokens_are_counted_to_the_microsecond(engine, sql, clock):
    """A bucket counted from a time cut to the millisecond credits up to a millisecond of tokens
    it never earned: at 1000 a second, two starts 0.2 ms apart with a burst of one."""
    clock.advance(0.0009)
    defn = wf("fast-api", py("hit", rateLimit={"key": "fast", "rate": 1000, "per": "1s", "burst": 1}))
    ids = [engine.start(defn) for _ in range(2)]
    assert len(engine.service.claim("w", 1, 30.0)) == 1
    clock.advance(0.0002)
    assert engine.service.claim("w", 1, 30.0) == []
    assert len(parked(sql)) == 1 and parked(sql)[0][0] == ids[1]


def test_a_claim_with_an_older_clock_reading_earns_no_tokens_from_the_past(engine, sql, clock):
    """Two claims whose clock readings commit out of order: the second's token still comes a
    whole period after the first's, and the bucket's count never moves back in time."""
    t0 = clock.now()
    defn = wf("stale", py("hit", rateLimit={"key": "five", "rate": 5, "per": "1s", "burst": 1}))
    engine.start(defn), engine.start(defn)
    claim = engine.execution.attempts.claim
    assert len(engine.store.write(claim, "a", 1, 30.0, t0 + 10.000)) == 1
    assert engine.store.write(claim, "b", 1, 30.0, t0 + 9.990) == []
    [(_run, visible, _reason)] = parked(sql)
    assert visible >= iso(t0 + 10.200)
    tokens, at = sql.one("SELECT tokens, tokens_at FROM rate_limits WHERE key = 'five'")
    assert (tokens, at) == (-1.0, t0 + 10.0)
