"""The engine driven by a real model: SmolLM2-135M on llama-cpp-python's OpenAI-compatible
server (see tests/real_model.py), through the `tau2-engine` command line as a user runs it.

Run with `pytest -m real_model -s` (the `-s` prints each run's statuses and tool calls).
Kept small for CI: few episodes, small step and token budgets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.events import read_events
from engine.results import Status
from engine.trajectory import rescore
from tests.helpers import assert_event_invariants, by_episode
from tests.real_model import MODEL_ALIAS, LlamaServer, llama_server

pytestmark = pytest.mark.real_model
RUN_TIMEOUT_S = float(os.environ.get("TAU2_ENGINE_REAL_MODEL_RUN_TIMEOUT") or 1500)
"""Deadline of one CLI run (pytest's own: `--timeout`, see .ci/real_model.sh)."""

CLI = [sys.executable, "-m", "engine.cli"]
STATUSES = {s.value for s in Status}
# request deadlines: TAU2_ENGINE_REQUEST_TIMEOUT / TAU2_USER_LLM_TIMEOUT (default 600 s)
BUDGET = ["--max-steps", "8", "--max-tokens", "128", "--temperature", "0", "--seed", "1",
          "--user-max-tokens", "64", "--max-retries", "1"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    with llama_server(tmp_path_factory.mktemp("llama")) as srv:
        yield srv


def run_cli(*args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def policy_flags(srv: LlamaServer, key: str = "sk-local") -> list[str]:
    return ["--policy", "openai", "--base-url", srv.base_url, "--api-key", key, "--model", MODEL_ALIAS]


def user_flags(srv: LlamaServer) -> list[str]:
    # litellm-style, as the original example's TAU2_USER_LLM
    return ["--user-model", f"openai/{MODEL_ALIAS}", "--user-base-url", srv.base_url]


def report(domain: str, records: list[dict[str, Any]]) -> None:
    ends = [e for e in records if e["event"] == "episode_end"]
    calls = Counter((e["requestor"], e["name"]) for e in records if e["event"] == "tool_call")
    print(f"\n[real model] {domain}: statuses {dict(Counter(e['status'] for e in ends))}")
    for end in ends:
        print(f"  {end['task_id']}: {end['status']} reward={end['reward']} turns={end['turns']} "
              f"tool_calls={end['tool_calls']} model_calls={end['model_calls']} "
              f"termination={end['termination_reason']} error_type={end['error_type']} "
              f"error={(end['error'] or '')[:160]!r}")
    print(f"  tool calls (requestor, name): {dict(calls)}")


def check_run(
    proc: subprocess.CompletedProcess[str], events: Path, domain: str, episodes_planned: int, *, label: str
) -> list[dict[str, Any]]:
    """What every real-model run must show, whatever the model did: no traceback, valid
    events, a status and a reason for every episode, the exit code saying whether the run
    measured anything, stock tau2 re-scoring each scored episode identically, analyze."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    records = list(read_events(events))
    report(label, records)
    assert_event_invariants(records)  # includes: every non-completed episode_end says why
    ends = [e for e in records if e["event"] == "episode_end"]
    assert len(ends) == episodes_planned
    assert {e["status"] for e in ends} <= STATUSES - {"cancelled"}
    assert {e["solo_mode"] for e in records if e["event"] == "episode_start"} == {False}
    all_infra = all(e["status"] == "infra_error" for e in ends)
    assert proc.returncode == (1 if all_infra else 0), proc.stderr[-3000:]
    if all_infra:
        assert proc.stderr.strip().splitlines()[-1].startswith(
            f"tau2-engine: error: all {len(ends)} episodes ended infra_error")
    turns = [e for e in records if e["event"] == "turn" and not e["history"]]
    assert all(t["content"] or t["tool_calls"] for t in turns)  # no empty message recorded
    rescored = 0
    for episode in by_episode(records).values():
        reward = next((e for e in episode if e["event"] == "reward"), None)
        if reward is not None:
            task_id = episode[0]["task_id"]
            assert rescore(episode, domain=domain, task_id=task_id, solo_mode=False) == reward["reward"]
            rescored += 1
    print(f"  re-scored by stock tau2: {rescored} of {len(ends)} episodes had a reward; all identical")
    analysis = run_cli("analyze", str(events), "--json", timeout=300)
    assert analysis.returncode == 0, analysis.stderr[-2000:]
    by_status = json.loads(analysis.stdout)["episodes"]["by_status"]
    assert sum(row["final"] for row in by_status) == len(ends)
    return records


@pytest.mark.parametrize("domain", ["telecom", "airline"])
def test_non_solo_with_the_llm_user_on_the_same_server(
    server: LlamaServer, tmp_path: Path, domain: str
) -> None:
    events = tmp_path / f"{domain}.jsonl"
    proc = run_cli("run", "--domain", domain, "--limit", "1", "--events", str(events),
                   *policy_flags(server), *user_flags(server), *BUDGET)
    records = check_run(proc, events, domain, 1, label=f"{domain}, LLM user")
    (end,) = [e for e in records if e["event"] == "episode_end"]
    users = [e for e in records if e["event"] == "turn" and e["role"] == "user"]
    # the LLM user model answered, or the episode says the simulator failed
    assert any(u["model"] == MODEL_ALIAS for u in users) or "user simulator" in (end["error"] or "")


# llama-cpp-python 0.3.36's chatml-function-calling, given tools and tool_choice "auto",
# first lets the model choose between "message:" and "functions.<name>:" under a grammar,
# sampled at temperature 0 whatever the request says; "message" then continues under a
# grammar that admits only a function name or <|im_end|>, so a text reply is always empty.
# Which path SmolLM2 takes is thus a function of the prompt alone: the scripted user's
# opening line (tau2's reason for the call) picks it, the same way on every run.
TOOLS_TASK = "[service_issue]airplane_mode_on|unseat_sim_card[PERSONA:None]"
"""Opens with "Your phone has been showing 'No Service'...": SmolLM2 calls a function."""
EMPTY_TASK = "[mobile_data_issue]airplane_mode_on|user_abroad_roaming_enabled_off[PERSONA:None]"
"""Opens with "You mobile data is not working properly...": SmolLM2 takes "message"."""


def test_telecom_agent_calls_its_tools_and_an_empty_reply_ends_as_tau2s(
    server: LlamaServer, tmp_path: Path
) -> None:
    """Dual-control telecom, the agent's requests carrying tools and tool_choice "auto" as
    stock tau2's LLMAgent sends them. On one task the real model calls telecom tools, which
    the environment runs and stock tau2 re-scores; on the other it replies empty, and the
    engine does what tau2 does: asks again 3 times, then ends agent_error (EmptyMessage)."""
    from tau2.domains.telecom.environment import get_environment

    telecom_tools = {tool.name for tool in get_environment().get_tools()}
    events = tmp_path / "telecom-tools.jsonl"
    proc = run_cli("run", "--domain", "telecom", "--task-id", TOOLS_TASK, "--task-id", EMPTY_TASK,
                   "--concurrency", "1", "--events", str(events), *policy_flags(server),
                   "--user", "scripted", *BUDGET)
    records = check_run(proc, events, "telecom", 2, label="telecom, scripted user")
    episodes = {episode[0]["task_id"]: episode for episode in by_episode(records).values()}

    tools = episodes[TOOLS_TASK]
    (end,) = [e for e in tools if e["event"] == "episode_end"]
    asked = [t for t in tools if t["event"] == "turn" and t["role"] == "assistant" and t["tool_calls"]]
    calls = [e for e in tools if e["event"] == "tool_call" and e["requestor"] == "assistant"]
    print(f"  {TOOLS_TASK}: assistant tool calls {[(c['name'], c['arguments'], c['result']) for c in calls]}")
    assert asked and all(t["model"] == MODEL_ALIAS for t in asked), end
    assert [c["call_id"] for c in calls] == [c["id"] for t in asked for c in t["tool_calls"]]
    assert {c["name"] for c in calls} <= telecom_tools and all(isinstance(c["result"], str) for c in calls)
    assert end["tool_calls"] == len(calls) and end["error_type"] != "EmptyMessage"
    assert any(e["event"] == "reward" for e in tools)  # re-scored by stock tau2 in check_run

    empty = episodes[EMPTY_TASK]
    (end,) = [e for e in empty if e["event"] == "episode_end"]
    retries = [r for r in empty if r["event"] == "retry" and r["error_type"] == "EmptyMessage"]
    print(f"  {EMPTY_TASK}: empty replies asked again: {len(retries)}")
    assert (end["status"], end["error_type"], end["model_calls"], len(retries)) == (
        "agent_error", "EmptyMessage", 4, 3), end
    assert "neither text nor tool calls, 4 times in a row" in end["error"]
    assert not [e for e in empty if e["event"] == "tool_call"]


def test_a_context_overflow_is_agent_error_and_not_retried(tmp_path: Path) -> None:
    with llama_server(tmp_path, n_ctx=2048) as small:
        events = tmp_path / "overflow.jsonl"
        proc = run_cli("run", "--domain", "telecom", "--limit", "1", "--events", str(events),
                       *policy_flags(small), "--user", "scripted", *BUDGET[:-2], "--max-retries", "3")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    records = list(read_events(events))
    report("telecom, policy on a 2048-token context", records)
    (end,) = [e for e in records if e["event"] == "episode_end"]
    assert (end["status"], end["error_type"], end["model_calls"]) == ("agent_error", "ContextOverflow", 1)
    assert [e for e in records if e["event"] == "retry"] == []
    assert proc.returncode == 0


def test_a_bad_api_key_stops_the_run_at_once_with_one_line(tmp_path: Path) -> None:
    with llama_server(tmp_path, api_key="sk-right") as keyed:
        events = tmp_path / "badkey.jsonl"
        started = time.monotonic()
        proc = run_cli("run", "--domain", "airline", "--limit", "4", "--concurrency", "1",
                       "--events", str(events), *policy_flags(keyed, key="sk-wrong"), "--user", "scripted",
                       *BUDGET)
        took = time.monotonic() - started
    print(f"\n[real model] bad key: exit {proc.returncode} after {took:.1f}s; "
          f"stderr: {proc.stderr.strip()!r}")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "run stopped" in lines[0] and "HTTP 401" in lines[0], proc.stderr
    records = list(read_events(events))
    ends = [e for e in records if e["event"] == "episode_end"]
    assert ends[0]["error_type"] == "EndpointRejected" and [e for e in records if e["event"] == "retry"] == []
    assert all(e["status"] == "cancelled" for e in ends[1:])
