"""`prefstream doctor`: is this deployment set up right? One line per check, with what to do when it fails.

    settings    every PREFSTREAM_* / KAFKA_* variable parses and agrees with the others
    broker      KAFKA_BOOTSTRAP_SERVERS answers (with the configured security)
    topics      the public topics exist with PREFSTREAM_PARTITIONS partitions and their policies
                (profiles compacted, retention as configured); nothing is created
    model       the configured backend can start here (checked without importing vLLM or torch)
    read API    a worker answers /readyz at http://PREFSTREAM_WEB_HOST:PREFSTREAM_WEB_PORT

Exit 0 when every check passes, 1 when one fails (a check that cannot run is skipped, and says why).
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prefstream.errors import PrefstreamError
from prefstream.cli_quiet import quiet_client_libraries
from prefstream.exit_codes import ExitCode
from prefstream.settings import Settings

#: How long each network check may take.
TIMEOUT_S: Final = 5.0

#: Lets `prefstream doctor` report a bad setting as its first check instead of ending on it.
RUNS_WITHOUT_SETTINGS: Final = True


@dataclass(frozen=True)
class Check:
    """The outcome of one check: `status` is ok, FAIL or skip; `fix` says what to do when it failed."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<5} {self.name:<9} {self.detail}"
        return f"{text}; {self.fix}" if self.fix else text


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("--api", default=None, metavar="URL",
                        help="a worker's read API (default http://PREFSTREAM_WEB_HOST:PREFSTREAM_WEB_PORT)")  # fmt: skip


def check_settings(settings: Settings | None, error: Exception | None) -> Check:
    if settings is None:
        return Check("settings", "FAIL", str(error), "fix that variable (`prefstream settings` lists them all)")
    return Check(
        "settings", "ok",
        f"valid (KAFKA_BOOTSTRAP_SERVERS={settings.kafka.bootstrap_servers}, {settings.topics.partitions} partitions, "
        f"backend {settings.model.backend or 'unset'})",
    )  # fmt: skip


def check_broker_and_topics(settings: Settings) -> list[Check]:
    from kafka import KafkaAdminClient

    from prefstream.kafka.security import client_errors, kafka_python_kwargs
    from prefstream.topics import inspect, required_topics

    kafka = settings.kafka
    try:
        with client_errors(kafka):  # holds kafka-python's retry log lines; a failure is one line
            admin = KafkaAdminClient(
                bootstrap_servers=kafka.bootstrap_servers, client_id=f"{kafka.client_id}-doctor",
                request_timeout_ms=int(TIMEOUT_S * 1000),
                **kafka_python_kwargs(kafka),
            )  # fmt: skip
    except PrefstreamError as exc:
        return [
            Check("broker", "FAIL", str(exc)),  # the error already says what to check
            Check("topics", "skip", "no broker to ask"),
        ]
    try:
        brokers = len(admin.describe_cluster().get("brokers", []))
        broker = Check("broker", "ok", f"{kafka.bootstrap_servers} answers ({brokers} broker{'s' * (brokers != 1)})")
        try:
            reports = inspect(required_topics(settings), admin)
        except Exception as exc:  # noqa: BLE001
            return [broker, Check("topics", "FAIL", f"cannot describe the topics ({type(exc).__name__})",
                                  "the principal needs Describe and DescribeConfigs on them (docs/reliability.md)")]  # fmt: skip
    finally:
        admin.close()
    bad = [r for r in reports if r.action != "ok"]
    if not bad:
        names = ", ".join(r.name for r in reports)
        return [broker, Check("topics", "ok", f"{names}: {settings.topics.partitions} partitions, policies as configured")]
    missing = [r.name for r in bad if r.action == "missing"]
    if missing and len(missing) == len(bad):
        return [broker, Check("topics", "FAIL", f"missing: {', '.join(missing)}", "run `prefstream topics ensure`")]
    detail = "; ".join(str(r) for r in bad)
    return [broker, Check("topics", "FAIL", detail,
                          "partitions are fixed at creation: use new topics (README 'Changing the partition count'); "
                          "configs: kafka-configs --alter, or `prefstream topics ensure` for missing ones")]  # fmt: skip


def check_model(settings: Settings) -> Check:
    m = settings.model
    if importlib.util.find_spec("faust") is None:
        return Check("model", "skip", "the worker is not installed here (a client install); check where workers run")
    backend = m.backend
    if not backend:
        return Check("model", "FAIL", "PREFSTREAM_MODEL_BACKEND is not set",
                     "set it to vllm, openai, extractive or ledger (README 'Model backends')")  # fmt: skip
    if backend in ("extractive", "ledger"):
        return Check("model", "ok", f"{backend} (built in, nothing to load)")
    if backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            return Check("model", "FAIL", "backend vllm, but vLLM is not installed",
                         "install the lock with vLLM (`bash scripts/bootstrap`, or pip install prefstream[gpu])")  # fmt: skip
        model = Path(m.model)
        if not (model / "config.json").is_file():
            return Check("model", "FAIL", f"PREFSTREAM_MODEL={m.model} is not a model directory (no config.json)",
                         "point it at a local directory with the weights, config and tokenizer")  # fmt: skip
        tokenizer = m.tokenizer or model
        if not (Path(tokenizer).is_file() or (Path(tokenizer) / "tokenizer.json").is_file()):
            return Check("model", "FAIL", f"no tokenizer.json in {tokenizer}", "set PREFSTREAM_TOKENIZER")
        return Check("model", "ok", f"vllm with {m.model} (load format {m.vllm_load_format})")
    return _check_openai(settings)


def _check_openai(settings: Settings) -> Check:
    import httpx

    m = settings.model
    headers = {"Authorization": f"Bearer {m.openai_api_key}"} if m.openai_api_key else {}
    url = m.openai_base_url.rstrip("/") + "/models"
    try:
        response = httpx.get(url, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        return Check("model", "FAIL", f"{m.openai_base_url} not reachable ({type(exc).__name__})",
                     "start `vllm serve` there or fix PREFSTREAM_OPENAI_BASE_URL")  # fmt: skip
    if response.status_code != 200:
        return Check("model", "FAIL", f"{url} answered {response.status_code}", "check PREFSTREAM_OPENAI_API_KEY")
    try:
        served = [str(entry.get("id")) for entry in response.json().get("data", [])]
    except (ValueError, AttributeError):
        served = []
    if m.model not in served:
        return Check("model", "FAIL", f"{m.openai_base_url} does not serve {m.model} (it serves {served})",
                     "set PREFSTREAM_MODEL to the served model name")  # fmt: skip
    return Check("model", "ok", f"openai: {m.openai_base_url} serves {m.model}")


def check_read_api(settings: Settings, api_url: str | None) -> Check:
    from prefstream.client.api import ProfileApi

    url = api_url or f"http://{settings.worker.web_host}:{settings.worker.web_port}"
    with ProfileApi(url, timeout_s=TIMEOUT_S) as api:
        ready, why = api.ready()
    if ready:
        return Check("read API", "ok", f"{url} is ready")
    return Check("read API", "FAIL", why, "start `prefstream worker`, or pass --api URL of a running one")


def run(args: argparse.Namespace) -> int:
    quiet_client_libraries(args.settings.worker.log_level if args.settings else "info")
    settings: Settings | None = args.settings
    checks = [check_settings(settings, getattr(args, "settings_error", None))]
    if settings is None:
        checks += [Check(name, "skip", "settings are invalid") for name in ("broker", "topics", "model", "read API")]
    else:
        checks += check_broker_and_topics(settings)
        checks += [check_model(settings), check_read_api(settings, args.api)]
    for check in checks:
        print(check.line(), flush=True)
    return ExitCode.FAILED if any(c.status == "FAIL" for c in checks) else ExitCode.OK
