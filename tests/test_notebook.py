"""The sync ``Client`` in a real Jupyter kernel: where users start.

A kernel (ipykernel) runs every cell inside its own running asyncio loop; the
official SDK's sync client works there, and so must ours. nbclient executes a
notebook built here with nbformat, against the emulator in this process; each
cell has a deadline and the kernel's start too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from holysheep_async.testing import MockServer, answer_text

ASK = [{"role": "user", "content": "Hello from a notebook"}]
KERNEL = "holysheep-test"


@pytest.fixture
def kernel_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernelspec for this interpreter (not whatever 'python3' the machine has)."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))


def text_of(cell: Any) -> str:
    return "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream")


def test_sync_client_in_a_jupyter_kernel(server: MockServer, kernel_dirs: None) -> None:
    notebook = new_notebook()
    notebook.cells = [
        new_code_cell(
            "import asyncio\n"
            "print(asyncio.get_running_loop().is_running())  # cells run inside the kernel's loop"
        ),
        new_code_cell(
            "from holysheep_async import Client\n"
            f"client = Client(api_key='test-key', base_url={server.base_url!r}, timeout=30)"
        ),
        new_code_cell(
            f"completion = client.chat.create(model='gpt-4o', messages={ASK!r}, max_tokens=6)\n"
            "print(completion.text)"
        ),
        new_code_cell(
            f"with client.chat.stream(model='gpt-4o', messages={ASK!r}, max_tokens=7) as stream:\n"
            "    for text in stream:\n"
            "        print(text, end='|')\n"
            "print()\n"
            "print(stream.finish_reason, stream.usage.completion_tokens)"
        ),
        new_code_cell("client.close()\nprint('closed')"),
    ]
    nbformat.validate(notebook)
    requests_before = len(server.requests)
    NotebookClient(
        notebook, timeout=60, startup_timeout=60, kernel_name=KERNEL, allow_errors=False
    ).execute()
    loop, _, created, streamed, closed = (text_of(cell) for cell in notebook.cells)
    assert loop.strip() == "True"  # the premise: a running loop in the cell's thread
    assert created.strip() == answer_text(ASK, 6)  # type: ignore[arg-type]
    pieces, end = streamed.strip().split("\n")
    assert "".join(pieces.split("|")) == answer_text(ASK, 7)  # type: ignore[arg-type]
    assert len(pieces.strip("|").split("|")) > 1  # several deltas, as they came
    assert end == "stop 7"
    assert closed.strip() == "closed"
    assert len(server.requests) == requests_before + 2
