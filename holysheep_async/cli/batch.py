"""``holysheep batch validate|submit|status|results|run``: the Batch API from the shell.

Exit codes: 0 done; 1 an error (invalid input, API error: the message says which);
2 bad command line; 3 ``run`` finished but some requests failed or are missing
(their results are in the output file all the same).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..batches import BatchReport, RunProgress
from ..jsonl import validate_requests
from ..models import Batch
from ._common import (
    BlockWriter,
    add_target_options,
    open_client,
    run,
    use_emulator,
    wait_for_reader,
)

EXIT_INCOMPLETE = 3
#: The emulator answers at once: poll it quickly so the command does not dawdle.
EMULATOR_POLL = 0.05


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "batch", help="validate, submit, follow and run Batch API jobs (half price, offline)"
    )
    bsub = p.add_subparsers(dest="batch_command", metavar="ACTION", required=True)

    v = bsub.add_parser("validate", help="check a batch input JSONL file, line by line")
    v.add_argument("file", type=Path)
    v.add_argument("--endpoint", default="/v1/chat/completions")
    v.set_defaults(func=validate)

    s = bsub.add_parser("submit", help="validate, upload and create one batch")
    s.add_argument("file", type=Path)
    s.add_argument("--endpoint", default="/v1/chat/completions")
    s.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    add_target_options(s)
    s.set_defaults(func=submit)

    st = bsub.add_parser("status", help="show a batch (--wait: follow it to the end)")
    st.add_argument("batch_id")
    st.add_argument("--wait", action="store_true")
    st.add_argument("--poll-interval", type=float)
    add_target_options(st)
    st.set_defaults(func=status)

    r = bsub.add_parser("results", help="download a finished batch's results")
    r.add_argument("batch_id")
    r.add_argument("-o", "--output", type=Path, help="JSONL file (default: standard output)")
    add_target_options(r)
    r.set_defaults(func=results)

    rn = bsub.add_parser(
        "run", help="the whole pipeline: split, submit, wait, download, retry, account"
    )
    rn.add_argument("file", type=Path, help="batch input JSONL (or seed-style task lines)")
    rn.add_argument("-o", "--output", type=Path, required=True, help="results JSONL file")
    rn.add_argument(
        "--journal", type=Path, help="resume file: run again after a crash to pick up the batches"
    )
    rn.add_argument("--retry", choices=["direct", "batch", "none"], default="direct")
    rn.add_argument("--max-per-batch", type=int, default=50_000, help="requests per batch")
    rn.add_argument("--poll-interval", type=float, help="seconds between polls (default adapts)")
    rn.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    rn.add_argument("--concurrency", type=int, default=16, help="direct calls in flight")
    rn.add_argument("--endpoint", default="/v1/chat/completions")
    add_target_options(rn)
    rn.set_defaults(func=run_pipeline)


# -- validate -----------------------------------------------------------------


def validate(args: argparse.Namespace) -> int:
    # tasks=True: what `batch run` and `batch submit` take (seed-style task lines too).
    report = validate_requests(args.file, endpoint=args.endpoint, tasks=True)
    for line, message in report.problems:
        print(f"{args.file}:{line}: {message}")
    if not report.ok:
        print(f"{args.file}: {len(report.problems)} problem(s) in {report.count} requests")
        return 1
    print(f"{args.file}: {report.count} requests, model {report.model}, OK")
    return 0


def _requests(file: Path, endpoint: str) -> Path | list[dict[str, Any]]:
    """The file as it is when it is in the Batch API's form, else its task lines."""
    if validate_requests(file, endpoint=endpoint).ok:
        return file
    if not validate_requests(file, endpoint=endpoint, tasks=True).ok:
        return file  # submit reports every problem
    with file.open("rb") as fh:
        return [json.loads(raw) for raw in fh]


# -- submit / status / results ------------------------------------------------------


def submit(args: argparse.Namespace) -> int:
    metadata = {}
    for item in args.metadata:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --metadata wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        metadata[key] = value

    async def go() -> int:
        async with open_client(args) as (client, _):
            batch = await client.batches.submit(
                _requests(args.file, args.endpoint),
                endpoint=args.endpoint,
                metadata=metadata or None,
            )
        print(f"{batch.id} {batch.status}")
        return 0

    return run(args, go)


def describe(batch: Batch) -> str:
    c = batch.request_counts
    counts = f" {c.completed} completed, {c.failed} failed of {c.total}" if c else ""
    return f"{batch.id} {batch.status} {batch.progress:5.1f}%{counts}"


def status(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_client(args) as (client, _):
            if args.wait:
                bar = ProgressBar()
                batch = await client.batches.wait(
                    args.batch_id,
                    poll_interval=args.poll_interval,
                    on_progress=lambda b: bar.show(b.progress, 100, describe(b)),
                )
                bar.close()
            else:
                batch = await client.batches.retrieve(args.batch_id)
        print(describe(batch))
        for error in batch.errors.data if batch.errors else []:
            where = f" (line {error.line})" if error.line else ""
            print(f"  {error.code}: {error.message}{where}")
        return 0

    return run(args, go)


def results(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_client(args) as (client, _):
            batch = await client.batches.retrieve(args.batch_id)
            if not batch.is_final:
                print(
                    f"error: batch {batch.id} is still {batch.status} ({batch.progress:.0f}%):"
                    " wait with `holysheep batch status --wait`",
                    file=sys.stderr,
                )
                return 1
            if args.output is not None:
                path = await client.batches.download(batch, args.output)
                print(f"results of {batch.id} ({batch.status}) -> {path}", file=sys.stderr)
            else:
                out = BlockWriter(sys.stdout)
                async for result in client.batches.results(batch):
                    out.write(json.dumps(result.to_line(), ensure_ascii=False) + "\n")
                out.flush()
        return 0

    code = run(args, go)
    if code == 0 and args.output is None:
        wait_for_reader(sys.stdout)  # `| head -1`: the same exit code run after run
    return code



# -- run --------------------------------------------------------------------------


class ProgressBar:
    """A one-line bar on a terminal; plain lines (on phase changes) elsewhere."""

    def __init__(self, stream: Any = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = ""  # what was shown last (in a log: tenth + phase)

    def show(self, done: float, total: float, label: str) -> None:
        share = done / total if total else 1.0
        if self.tty:
            filled = int(self.width * share)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r[{bar}] {100 * share:5.1f}% {label}\x1b[K")
            self.stream.flush()
        else:
            # In a log, a line per tenth and per phase or batch change, not per poll.
            key = f"{int(10 * share)} {label.partition(' ')[2]}"
            if key != self.last:
                self.stream.write(f"{100 * share:5.1f}% {label}\n")
                self.stream.flush()
            self.last = key

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def summary(report: BatchReport) -> str:
    cost = (
        "unknown (no price for this model)"
        if report.cost_usd is None
        else f"${report.cost_usd:.4f}"
    )
    rows = [
        ("succeeded", f"{len(report.succeeded):,}"),
        ("failed", f"{len(report.failed):,}"),
        ("missing", f"{len(report.missing):,}"),
        ("total tokens", f"{report.total_tokens:,}"),
        ("cost", cost),
        ("mode", "Batch API" if report.mode == "batch" else "direct calls (no Batch API)"),
    ]
    return "\n".join(f"   {name:<13} {value}" for name, value in rows)


def run_pipeline(args: argparse.Namespace) -> int:
    poll = args.poll_interval
    if poll is None and use_emulator(args):
        poll = EMULATOR_POLL

    async def go() -> int:
        bar = ProgressBar()
        announced: set[str] = set()

        def progress(p: RunProgress) -> None:
            batch = p.batch
            if batch is not None and batch.id not in announced:
                announced.add(batch.id)
                # A line of its own (the journal has it by now): what to look for after a crash.
                bar.close()
                how = "submitted" if p.phase == "submitted" else "resumed"
                print(f"batch {batch.id} {how}", file=sys.stderr, flush=True)
            if p.phase == "submitted":
                return
            label = f"{p.done:,}/{p.total:,} {p.phase}"
            bar.show(p.done, p.total, label if batch is None else f"{label} {batch.id}")

        async with open_client(args) as (client, _):
            report = await client.batches.run(
                args.file,
                journal=args.journal,
                output=args.output,
                on_progress=progress,
                retry=args.retry,
                max_requests_per_batch=args.max_per_batch,
                poll_interval=poll,
                timeout=args.timeout,
                concurrency=args.concurrency,
                endpoint=args.endpoint,
            )
        bar.close()
        print(summary(report))
        print(f"   results       {args.output}")
        return 0 if not report.failed and not report.missing else EXIT_INCOMPLETE

    return run(args, go)
