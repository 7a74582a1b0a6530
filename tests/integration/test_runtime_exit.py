"""A stopped runtime ends with its own exit code, every time, never with a signal.

The Pulsar client can abort a process that finalizes just after closing it (SIGABRT; why is in
`lambdasink_runtime.__main__.end_process`, which the runtime ends through). A pod shows that as
a crash and a restart. The abort is a race, so one stop proves little:
- the first test closes a consumer and ends the process at once, the worst timing, many times
  (with a plain `sys.exit` instead of `end_process`, 10 of 120 such processes aborted here);
- the second stops the real runtime repeatedly, each time after it has delivered messages.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from runtime_support import Runtimes, rest_produce, runtime_config, unique, unique_topic, wait_items
from tests.stack import Recorder, Stack

pytestmark = pytest.mark.integration

CLOSE_AND_END = """
import sys
from lambdasink_runtime.__main__ import end_process
from lambdasink_runtime.config import PulsarConfig
from lambdasink_runtime.consumer import PulsarSource

url, topic, sub = sys.argv[1:]
source = PulsarSource(PulsarConfig(service_url=url, topics=(topic,), subscription_name=sub))
source.receive(10, 0.05)
source.close()
end_process(0)
"""

PROCESSES = 40
RUNTIME_STOPS = 8
PER_STOP = 3


def test_closing_the_consumer_and_ending_at_once_exits_0(stack: Stack) -> None:
    topic = unique_topic("exit-race")

    def run(i: int) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", CLOSE_AND_END, stack.pulsar_service_url, topic, unique("s")]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

    with ThreadPoolExecutor(max_workers=3) as pool:
        done = list(pool.map(run, range(PROCESSES)))
    failed = [p for p in done if p.returncode != 0]
    assert not failed, (
        f"{len(failed)} of {PROCESSES} exits failed, e.g. {failed[0].returncode}:\n"
        f"{failed[0].stderr[-2000:]}"
    )


def test_every_sigterm_ends_with_exit_code_0(
    stack: Stack, runtimes: Runtimes, recorder: Recorder
) -> None:
    for stop in range(RUNTIME_STOPS):
        topic = unique_topic("rt-exit")  # the REST producer creates its topic
        rest_produce(stack, topic, "STRING", [{"payload": f"{stop}-{i}"} for i in range(PER_STOP)])
        cfg = runtime_config(stack, recorder.function, topics=[topic], sink={"batchMaxTimeMs": 20})
        proc = runtimes.start(cfg, name=f"stop{stop}")
        wait_items(recorder, PER_STOP * (stop + 1))
        code = proc.terminate()
        stderr = proc.stderr()
        assert code == 0, f"stop {stop + 1} of {RUNTIME_STOPS} ended with {code}:\n{stderr[-2000:]}"
        assert "stopped cleanly" in stderr
