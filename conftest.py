"""Runs every code block of README.md and docs/*.md (``nox -s docs``), with Sybil.

The rules the pages follow:

- A ```` ```python ```` block is executed (top-level ``await`` allowed); the blocks
  of one page share a namespace and a working folder. When the next block is a
  ```` ```text ```` block, it is what the code prints, compared line by line.
- A ```` ```console ```` block: each ``$ command`` runs in bash (the CLI, the
  examples) and what follows it, up to the next ``$``, is its output (stdout
  and stderr together).
- Expected output is a real run's output. What differs from run to run is
  matched loosely: a number matches any number (``41 ms`` matches ``38 ms``,
  ``$0.0003`` matches ``$0.0004``, ``1,300`` matches ``1,298``); an id of the
  API's kinds matches any id of the same kind (``batch_000004`` any
  ``batch_...``, likewise ``file-``, ``req_``, ``chatcmpl-`` ... see ``ID_PREFIXES``);
  two or more spaces match any run of spaces (columns move when a number
  widens). ``...`` stands for any text within a line, and a line holding only
  ``...`` for any number of lines. Everything else (words, names, model names
  such as ``gpt-4o``, custom ids such as ``doc-1234``) must be as printed.
  (``<number>`` and ``<id>`` are still understood, for a value no sample can show.)
- ``<!-- not run: REASON -->`` just before a block leaves it out, saying why.

Python blocks run with ``HOLYSHEEP_BASE_URL`` / ``HOLYSHEEP_API_KEY`` pointing at
an embedded emulator, so ``AsyncClient()`` works as it would against the real
service; console blocks run without them (the CLI then uses its own emulator).
"""

from __future__ import annotations

import ast
import difflib
import inspect
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent

try:
    from sybil import Document, Example, Region, Sybil
except ImportError:  # the docs extra is not installed: the pages are not collected
    Sybil = None  # type: ignore[assignment,misc]


FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<why>.+?)\s*-->\s*$")
MARKER = "@@holysheep-doc-command@@"


# The id kinds of the OpenAI API (and the emulator), prefix included in the match.
ID_PREFIXES = (
    "batch_req_", "batch_", "file-", "chatcmpl-", "cmpl-", "req_", "resp_", "msg_",
    "call_", "fc_", "rs_", "run_", "ftjob-", "asst_", "thread_", "vs_",
)  # fmt: skip
# One token of an expected line that is not matched literally.
_TOKEN = re.compile(
    r"(?P<placeholder><number>|<id>)"
    r"|(?P<dots>\.\.\.)"
    rf"|(?P<id>\b(?:{'|'.join(ID_PREFIXES)})[A-Za-z0-9_]+)"
    # A number standing alone: not part of a name (gpt-4o, doc-1234, q7) or an address.
    r"|(?P<number>(?<![\w.])(?<!\w-)(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\.?\w))"
    r"|(?P<spaces> {2,})"
)
_ANY_NUMBER = r"[-+]?(?:\d[\d,]*)?\.?\d+"


def line_pattern(line: str) -> str:
    """The regular expression one expected line stands for (see the module docstring)."""
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(line):
        out.append(re.escape(line[pos : m.start()]))
        pos = m.end()
        kind = m.lastgroup
        text = m.group()
        if kind == "placeholder":
            out.append(_ANY_NUMBER if text == "<number>" else r"[\w.:-]+")
        elif kind == "dots":
            out.append(r"[^\n]*?")
        elif kind == "id":
            prefix = next(p for p in ID_PREFIXES if text.startswith(p))
            out.append(re.escape(prefix) + r"[A-Za-z0-9_]+")
        elif kind == "number":
            out.append(_ANY_NUMBER)
        else:
            out.append(" +")
    out.append(re.escape(line[pos:]))
    return "".join(out)


def matches(actual: str, expected: str) -> bool:
    """``actual`` fits ``expected``, numbers and ids aside (see the module docstring)."""
    parts: list[str] = []
    for line in _lines(expected):
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        parts.append(line_pattern(line) + r"\n")
    return re.fullmatch("".join(parts), "".join(f"{x}\n" for x in _lines(actual))) is not None


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    return lines


def check(actual: str, expected: str, what: str) -> None:
    if not matches(actual, expected):
        diff = "\n".join(
            difflib.unified_diff(
                _lines(expected), _lines(actual), "documented", "printed", lineterm=""
            )
        )
        raise AssertionError(f"{what}: the output differs from the page\n{diff}")


def run_python(example: Example) -> None:
    source, expected, line = example.parsed
    # Pad so that a traceback names the page's own line numbers.
    code = compile(
        "\n" * line + source,
        str(example.path),
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )
    namespace = example.namespace
    out = io.StringIO()
    # A page's logging.basicConfig() sees the root logger as a fresh program has it.
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers.clear()
    try:
        with redirect_stdout(out):
            _execute(code, namespace)
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], level = saved
        root.setLevel(level)
    if expected is not None:
        check(out.getvalue(), expected, f"{example.path}:{example.line}")
    elif out.getvalue().strip():
        sys.stdout.write(out.getvalue())


def _execute(code: Any, namespace: dict[str, Any]) -> None:
    if True:
        if code.co_flags & inspect.CO_COROUTINE:
            import anyio

            async def main() -> None:
                await eval(code, namespace)

            anyio.run(main)
        else:
            exec(code, namespace)


def run_console(example: Example) -> None:
    commands: list[tuple[str, str]] = example.parsed
    # The marker keeps the last command's status for `echo $?`.
    script = "\n".join(
        f"__rc=$?; printf '\\n{MARKER}\\n'; (exit $__rc)\n{cmd}" for cmd, _ in commands
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLYSHEEP_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=example.namespace["__workdir__"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    outputs = result.stdout.split(f"\n{MARKER}\n")[1:]
    assert len(outputs) == len(commands), result.stdout
    for (cmd, expected), actual in zip(commands, outputs, strict=True):
        check(actual, expected, f"{example.path}:{example.line}: $ {cmd}")


def parse_console(body: str) -> list[tuple[str, str]]:
    commands: list[tuple[str, str]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], ""))
        elif commands:
            cmd, out = commands[-1]
            commands[-1] = (cmd, out + line + "\n")
    return commands


def parse(document: Document) -> Any:
    text = document.text
    blocks = list(FENCE.finditer(text))
    for i, block in enumerate(blocks):
        lang = block.group("lang")
        if lang not in ("python", "console"):
            continue
        before = text[: block.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if NOT_RUN.search(before):
            continue
        line = text.count("\n", 0, block.start("body"))
        body = _dedent(block.group("body"), block.group("indent"))
        if lang == "console":
            yield Region(block.start(), block.end(), parse_console(body), run_console)
            continue
        expected = None
        if i + 1 < len(blocks):
            following = blocks[i + 1]
            between = text[block.end() : following.start()]
            if following.group("lang") in ("text", "") and not between.strip():
                expected = _dedent(following.group("body"), following.group("indent"))
        yield Region(block.start(), block.end(), (body, expected, line), run_python)


def _dedent(body: str, indent: str) -> str:
    if not indent:
        return body
    return "".join(
        line[len(indent) :] if line.startswith(indent) else line
        for line in body.splitlines(keepends=True)
    )


def setup(namespace: dict[str, Any]) -> None:
    """A page runs in a folder of its own, against an emulator of its own."""
    from holysheep_async.testing import MockServer

    workdir = Path(tempfile.mkdtemp(prefix="holysheep-doc-"))
    (workdir / "examples").symlink_to(ROOT / "examples")
    server = MockServer(api_keys=["doc-key"]).start()
    saved = {k: os.environ.get(k) for k in ("HOLYSHEEP_BASE_URL", "HOLYSHEEP_API_KEY")}
    os.environ["HOLYSHEEP_BASE_URL"] = server.base_url
    os.environ["HOLYSHEEP_API_KEY"] = "doc-key"
    cwd = os.getcwd()
    os.chdir(workdir)
    namespace.update(
        __name__="__main__",
        __workdir__=workdir,
        __teardown__=(server, saved, cwd),
    )


def teardown(namespace: dict[str, Any]) -> None:
    server, saved, cwd = namespace["__teardown__"]
    os.chdir(cwd)
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(namespace["__workdir__"], ignore_errors=True)


if Sybil is not None:
    pytest_collect_file = Sybil(
        parsers=[parse],
        patterns=["README.md", "docs/*.md"],
        setup=setup,
        teardown=teardown,
    ).pytest()
