"""`lambdasink-runtime`: load the configuration, check the function, run the pipeline, drain.

Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 2 configuration error, 3 function check failed,
1 anything else. A fatal start-up error is also written, as one line, to the termination-message
file (env LAMBDASINK_TERMINATION_LOG, default /dev/termination-log when writable) so Kubernetes
shows it in the pod status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, TypeVar

from . import credentials
from .attempts import AttemptStore
from .config import load_config
from .config_help import adaptive_help, failure_help, pulsar_help, runtime_help, sink_help, tls_help
from .consumer import PulsarSource
from .deadletter import DeadLetterProducer
from .errors import ConfigError, FunctionCheckError, LambdaSinkError
from .invoker import Invoker
from .metrics import Metrics
from .pipeline import Pipeline
from .schemas import SchemaRegistry
from .server import HttpServer

if TYPE_CHECKING:
    from .config import RuntimeConfig

EXIT_OK = 0
EXIT_OTHER = 1
EXIT_CONFIG = 2
EXIT_FUNCTION_CHECK = 3
ENV_TERMINATION_LOG = "LAMBDASINK_TERMINATION_LOG"
#: Set by the operator (downward API); /status names the pod with it.
ENV_POD_NAME = "LAMBDASINK_POD_NAME"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
#: /healthz fails when the receive loop has not turned for this long.
STUCK_AFTER_S = 30.0

log = logging.getLogger("lambdasink")

#: Every property line but the structured ones (topics, authentication) is written from the
#: property declarations (config_help).
EPILOG = Template("""\
configuration file (YAML or JSON; or the whole document in env LAMBDASINK_CONFIG):

  pulsar:                       the consumer side
    topics | inputs             list (or comma-separated) of topics; or:
    topicsPattern               a regex of topics (exactly one of topics / topicsPattern)
${pulsar}
    authentication              {token: {file|env|value}} | {oauth2: {issuerUrl, privateKey,
                                audience, scope}} | {tls: {certFile, keyFile}}
${tls}

  sink:                         the reference connector's --sink-config object
${sink}

  runtime:                      the worker process
${runtime}

secrets may come from the environment instead of the file: LAMBDASINK_AWS_ACCESS_KEY,
LAMBDASINK_AWS_SECRET_KEY, LAMBDASINK_AWS_CREDENTIAL_PLUGIN_PARAM, LAMBDASINK_PULSAR_TOKEN.

  failurePolicy:                what happens to a record whose invocations fail (our own)
${failure}

  adaptiveInFlight:             in-flight limit adapted per worker (our own, opt-in)
${adaptive}

HTTP: /healthz (alive, loop not stuck), /readyz (subscribed and function checked; not while
draining or while the circuit breaker is open), /metrics (Prometheus text format), /status
(JSON: breaker state, records dead-lettered/dropped by reason, dead-letter write errors,
in-flight limit).

exit codes: 0 clean shutdown, 1 other error, 2 configuration error, 3 function check failed.
""").substitute(
    pulsar=pulsar_help(),
    tls=tls_help(),
    sink=sink_help(),
    runtime=runtime_help(),
    failure=failure_help(),
    adaptive=adaptive_help(),
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lambdasink-runtime",
        description="Consume Apache Pulsar topics and invoke an AWS Lambda function with them, "
        "acknowledging each message only after Lambda has taken it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="configuration file (YAML/JSON); default: the document in env LAMBDASINK_CONFIG",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate, print the effective configuration with secrets redacted, and exit",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="override runtime.logLevel",
    )
    return parser.parse_args(argv)


class _OneLineFormatter(logging.Formatter):
    """`time level logger: message key=value...` on one line (tracebacks folded with ' | ')."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + (
            f".{int(record.msecs):03d}Z"
        )

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "").replace("\n", " | ")


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Pulsar C++ client is chatty at INFO; keep its warnings.
    logging.getLogger("lambdasink.pulsar").setLevel(max(logging.WARNING, root.level))
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def write_termination_message(message: str) -> None:
    """Best effort: the one-line reason Kubernetes puts into the pod's status.

    Env LAMBDASINK_TERMINATION_LOG names the file (created if needed); otherwise
    /dev/termination-log is written only if it already exists.
    """
    explicit = os.environ.get(ENV_TERMINATION_LOG)
    target = Path(explicit or DEFAULT_TERMINATION_LOG)
    # The default path is only used where Kubernetes provides it (it exists and is writable).
    if not explicit and not (target.exists() and os.access(target, os.W_OK)):
        return
    with contextlib.suppress(OSError):
        target.write_text(message.splitlines()[0][:4000] + "\n", encoding="utf-8")


def _fatal(code: int, message: str) -> int:
    print(f"lambdasink-runtime: {message}", file=sys.stderr)
    write_termination_message(message)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level or "INFO")
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return _fatal(EXIT_CONFIG, f"configuration error: {exc}")
    if args.check_config:
        print(json.dumps(cfg.redacted_dict(), indent=2, sort_keys=True))
        return EXIT_OK
    setup_logging(args.log_level or cfg.runtime.log_level)
    try:
        return run(cfg)
    except ConfigError as exc:
        return _fatal(EXIT_CONFIG, f"configuration error: {exc}")
    except FunctionCheckError as exc:
        return _fatal(EXIT_FUNCTION_CHECK, f"function check failed: {exc}")
    except LambdaSinkError as exc:
        return _fatal(EXIT_OTHER, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        log.exception("fatal error")
        return _fatal(EXIT_OTHER, f"fatal error: {type(exc).__name__}: {exc}")


def run(cfg: RuntimeConfig) -> int:
    """Start everything, block until SIGTERM/SIGINT has been handled, return the exit code."""
    metrics = Metrics()
    state = _State()
    server = HttpServer(
        cfg.runtime.http_host,
        cfg.runtime.http_port,
        metrics=metrics,
        healthy=state.healthy,
        ready=state.ready,
        status=state.status,
    ).start()
    try:
        log.info(
            "starting: function=%s region=%s invocation=%s format=%s credentials=%s",
            cfg.sink.lambda_function_name,
            cfg.sink.aws_region,
            "sync" if cfg.sink.synchronous_invocation else "async",
            cfg.sink.payload_format,
            credentials.describe(cfg.sink),
        )
        invoker = Invoker(cfg.sink, metrics=metrics)
        # Until the pipeline's own handlers are installed, a SIGTERM (a pod deleted while still
        # starting) must end the process cleanly, not kill it mid-call with a signal status.
        previous = signal.signal(signal.SIGTERM, _interrupt_start_up)
        source: PulsarSource | None = None
        dead_letters: DeadLetterProducer | None = None
        try:
            invoker.check_function()
            state.function_checked = True
            log.info("function %s is reachable", cfg.sink.lambda_function_name)
            source = _interruptible(lambda: _open_source(cfg))
            # Counts are read before the first record is received, so a record that failed
            # before a restart resumes with its count.
            client = source.client
            store = _interruptible(lambda: AttemptStore(client, cfg.failure.attempts_topic))
            source.close_before_client(store.close)
            if cfg.failure.on_exhausted == "deadLetter":
                dead_letters = DeadLetterProducer(
                    source.client, cfg.pulsar.dead_letter_topic_for, cfg.pulsar.subscription_name
                )
                source.close_before_client(dead_letters.close)
            log.info(
                "failure policy: maxAttempts=%d onExhausted=%s maxRecordAgeMs=%d "
                "reportBatchItemFailures=%s bisectOnFunctionError=%s",
                cfg.failure.max_attempts,
                cfg.failure.on_exhausted,
                cfg.failure.max_record_age_ms,
                cfg.failure.report_batch_item_failures,
                cfg.failure.bisect_on_function_error,
            )
            pipeline = Pipeline.from_config(
                cfg.sink,
                cfg.pulsar,
                source,
                invoker,
                metrics=metrics,
                drain_timeout_s=cfg.runtime.drain_timeout_s,
                policy=cfg.failure,
                attempts=store,
                dead_letters=dead_letters,
                adaptive=cfg.adaptive,
            )
            invoker.observer = pipeline
            if cfg.adaptive.enabled:
                log.info(
                    "adaptive in-flight: between %d and %d (backoffRatio=%g latencyTolerance=%g)",
                    pipeline.limiter.min_limit,
                    pipeline.limiter.max_limit,
                    cfg.adaptive.backoff_ratio,
                    cfg.adaptive.latency_tolerance,
                )
            state.pipeline = pipeline
            state.connected = True
            asyncio.run(_serve(pipeline))
        except _StartUpInterrupted:
            log.info("SIGTERM received during start-up: nothing was received, exiting")
            if source is not None and source.connected:
                source.close()
        except BaseException:
            if source is not None and source.connected:
                source.close()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            invoker.close()
    finally:
        server.close()
    log.info("stopped cleanly")
    return EXIT_OK


class _StartUpInterrupted(BaseException):
    """SIGTERM arrived before the pipeline (and its graceful drain) was running.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way swallows it.
    """


def _interrupt_start_up(_signum: int, _frame: object) -> None:
    raise _StartUpInterrupted


_T = TypeVar("_T")


def _interruptible(call: Callable[[], _T]) -> _T:
    """Run a blocking client call on a thread while the main thread waits in short joins.

    A Python signal handler runs only when the main thread executes bytecode; the Pulsar
    client's subscribe can block in C++ for its whole operation timeout (30 s) while it retries
    a broker that refuses connections, so a SIGTERM during start-up would wait that long. The
    thread is a daemon: an interrupted start-up ends the process without waiting for it.
    """
    result: list[_T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as is
            error.append(exc)

    thread = threading.Thread(target=target, name="start-up", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
    if error:
        raise error[0]
    return result[0]


def _open_source(cfg: RuntimeConfig) -> PulsarSource:
    registry = SchemaRegistry(cfg.pulsar.admin_url, auth=cfg.pulsar.auth)
    source = PulsarSource(cfg.pulsar, registry)
    where = cfg.pulsar.topics_pattern or ",".join(cfg.pulsar.topics)
    log.info(
        "subscribed to %s as %s (%s)",
        where,
        cfg.pulsar.subscription_name,
        cfg.pulsar.subscription_type,
    )
    return source


async def _serve(pipeline: Pipeline) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, pipeline, sig)
    await pipeline.run()


def _on_signal(pipeline: Pipeline, sig: signal.Signals) -> None:
    log.info("%s received: stop receiving, flush, wait for in-flight invocations", sig.name)
    pipeline.stop()


class _State:
    """What the probes read; plain attributes written by the main thread."""

    def __init__(self) -> None:
        self.function_checked = False
        self.connected = False
        self.pipeline: Pipeline | None = None

    def healthy(self) -> tuple[bool, str]:
        p = self.pipeline
        if p is None or not p.running:
            return True, "starting" if p is None else "not running"
        if p.draining:
            return True, "draining"
        stale = time.monotonic() - p.heartbeat
        if stale > STUCK_AFTER_S:
            return False, f"receive loop stuck for {stale:.0f}s"
        return True, "running"

    def ready(self) -> tuple[bool, str]:
        p = self.pipeline
        if not self.function_checked:
            return False, "function not checked yet"
        if not self.connected or p is None:
            return False, "not subscribed yet"
        if p.draining:
            return False, "draining"
        if not p.running:
            return False, "pipeline not running"
        if p.breaker.is_open:
            return False, f"circuit breaker {p.breaker.state}, not receiving: {p.breaker.reason}"
        return True, "ready"

    def status(self) -> dict[str, object]:
        p = self.pipeline
        ready, reason = self.ready()
        out: dict[str, object] = {
            "pod": os.environ.get(ENV_POD_NAME, ""),
            "ready": ready,
            "reason": reason,
        }
        if p is not None:
            out.update(p.status())
        return out
