"""The Python client against a real server, started by the package's own pytest plugin."""

import time

import pytest

from switchyard_client import ApiError, WaitTimeout


def ensure_device(sy, name, type_name):
    try:
        sy.create_device(name, type_name)
    except ApiError as e:
        assert e.code == "conflict", e


def test_a_background_command_is_refused_while_busy_and_the_wait_follows_the_watch(switchyard):
    ensure_device(switchyard, "sw1", "switch")
    started = switchyard.background("sw1", "switch_on", duration=1.5)
    assert started["transition"]["command"] == "switch_on"
    # Busy now: a fixed short sleep and a look would see this, not ON.
    assert switchyard.device("sw1")["transition"] is not None
    with pytest.raises(ApiError) as refused:
        switchyard.command("sw1", "switch_off")
    assert refused.value.status == 409 and refused.value.code == "busy"
    t0 = time.monotonic()
    d = switchyard.wait_for_state("sw1", "ON", timeout=20)
    waited = time.monotonic() - t0
    assert d["state"] == "ON" and d["transition"] is None
    # Woken by the completion event, not by the timeout.
    assert waited < 10, waited


def test_b_devices_are_reset_between_tests(switchyard):
    # The previous test left sw1 ON; the fixture reset it.
    assert switchyard.state("sw1") == "OFF"


def test_a_wait_that_times_out_fails_with_the_device_history(switchyard):
    ensure_device(switchyard, "sw2", "switch")
    switchyard.command("sw2", "switch_on")  # instantly ON: one transition in the history
    switchyard.background("sw2", "switch_off", duration=30)
    with pytest.raises(WaitTimeout) as timed_out:
        switchyard.wait_for_state("sw2", "OFF", timeout=0.5)
    text = str(timed_out.value)
    assert "did not reach 'OFF' within 0.5s" in text
    assert "switch_on completed" in text, text


def test_a_blocking_command_answers_the_device_after_the_transition(switchyard):
    ensure_device(switchyard, "sw3", "switch")
    d = switchyard.command("sw3", "switch_on", duration=0.2, wait=True)
    assert d["state"] == "ON"
    assert switchyard.history("sw3")[0]["command"] == "switch_on"


def test_a_subscription_resumes_after_a_dropped_connection_without_gap_or_repeat(switchyard):
    switchyard.open_account("py-a")
    with switchyard.events("bank/accounts/py-a") as sub:
        for _ in range(3):
            switchyard.credit("py-a", 1)
        first = [sub.next_event(timeout=10) for _ in range(3)]
        sub._ws.close()  # the connection drops
        for _ in range(3):
            switchyard.credit("py-a", 1)
        rest = [sub.next_event(timeout=10) for _ in range(3)]
        assert sub.next_event(timeout=0.3) is None
    revisions = [e.revision for e in first + rest]
    assert None not in first + rest
    assert revisions == sorted(set(revisions)), revisions
    assert switchyard.account("py-a")["balance"] == 6


def test_bank_refusals_are_typed(switchyard):
    switchyard.open_account("py-b")
    with pytest.raises(ApiError) as e:
        switchyard.debit("py-b", 5)
    assert e.value.code == "insufficient_funds"
    with pytest.raises(ApiError) as e:
        switchyard.open_account("py-b")
    assert e.value.code == "conflict"


def test_a_job_runs_on_the_local_worker(switchyard):
    job = switchyard.submit(["sh", "-c", "echo hello from a job"])
    done = switchyard.wait_for_job(job["id"], timeout=30)
    assert done["status"] == "succeeded", done
    lines = [l["text"] for l in switchyard.logs(job["id"])["lines"]]
    assert "hello from a job" in lines


def test_a_run_of_a_small_matrix_passes(switchyard):
    run = switchyard.create_run(
        {"matrix": {"n": ["1", "2"]}, "command": ["sh", "-c", "exit 0", "{n}"]}
    )
    assert run["cells"] == 2
    with switchyard.events(f"runs/{run['id']}") as sub:
        while switchyard.run(run["id"])["status"] == "running":
            assert sub.next_event(timeout=30) is not None, "the run stalled"
    assert switchyard.run(run["id"])["status"] == "passed"


def test_a_pour_is_listed(switchyard):
    beer = switchyard.pour(3, 568)
    assert beer["type"] == "pint"
    assert any(b["id"] == beer["id"] for b in switchyard.beers())
