"""Every command and snippet in README.md and docs/*.md runs as written, in a scratch copy of the checkout.

The test reads every fenced ```bash and ```python block of the documents (new blocks are picked up
without touching this file) and runs them in document order in one scratch folder that looks like
a checkout after ``./tasks.sh demo``: ``.venv`` (this test's environment), ``out/`` (written by
``python -m export demo`` itself, see :func:`test_the_demo_runs_every_step`), a few digits as PNG
files and arrays, and a home folder for the device commands. Only host names, ports and paths are
adapted: ``*.local:PORT`` and ``0.0.0.0:PORT`` become free ports on 127.0.0.1 (a real Mosquitto
for MQTT), ``scp HOST:PATH`` copies into ``$HOME/PATH`` (both devices share this machine), and
``sudo`` commands are not run (their result, e.g. ``python3-venv``, must already be there). ``pip``
and bare ``compressor`` are those of a fresh virtual environment into which the README's own
install commands install the wheel, as on a device.

A block may declare what it needs in an HTML comment on the line before its fence::

    <!-- docs-test: background ready=listening -->   a server: started, kept running while the
                                                    next block runs, then stopped (it must not
                                                    have failed before)
    <!-- docs-test: given=images,names -->          python: variables defined before the snippet
    <!-- docs-test: replace="--epochs 30=>--epochs 1" -->   a cheaper argument, said in the document
    <!-- docs-test: skip="needs a Raspberry Pi" -->  only for what cannot run here (listed by
                                                    test_every_skipped_block_says_why)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.support import ROOT, mnist5k_test, to_uint8

DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
RUN_LANGUAGES = ("bash", "python")
DIRECTIVE = re.compile(r"<!--\s*docs-test:(.*?)-->")
KEYS = {"skip", "background", "ready", "given", "replace", "timeout"}
#: What ``given=`` may name: variables a python snippet may assume, defined from the scratch folder.
GIVEN = {
    "images": "images = np.load('out/test_images.npy')[:16]",
    "names": "names = [f'digit{i:02d}.png' for i in range(16)]",
    "gray_images": "gray_images = np.load('digits.npy')  # grey levels, not binarized",
}
PORTS = {7467: "tcp", 1883: "mqtt"}


@dataclass
class Block:
    document: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    directive: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.document.name}:{self.line}"


def parse_directive(text: str) -> dict:
    out = {}
    for item in shlex.split(text):
        key, sep, value = item.partition("=")
        out[key] = value if sep else True
    return out


def document_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, each with the directive just above it, if any."""
    blocks, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, indent = i, m.group(1)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        body = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end])
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        d = DIRECTIVE.search(before)
        blocks.append(Block(path, start + 1, m.group(2), body, parse_directive(d.group(1)) if d else {}))
        i = end + 1
    return blocks


ALL_BLOCKS = [b for doc in DOCUMENTS for b in document_blocks(doc)]
RUN_BLOCKS = [b for b in ALL_BLOCKS if b.language in RUN_LANGUAGES]


# --- quick checks of the documents themselves -----------------------------------------------
def test_every_directive_is_understood_and_on_a_runnable_block():
    for b in ALL_BLOCKS:
        assert set(b.directive) <= KEYS, f"{b.id}: unknown docs-test keys {set(b.directive) - KEYS}"
        assert not b.directive or b.language in RUN_LANGUAGES, f"{b.id}: docs-test on a ```{b.language} block"
        assert set(filter(None, str(b.directive.get("given", "")).split(","))) <= set(GIVEN), b.id


def test_every_skipped_block_says_why():
    skipped = [(b.id, b.directive["skip"]) for b in RUN_BLOCKS if "skip" in b.directive]
    for where, why in skipped:
        assert isinstance(why, str) and len(why) > 10, f'{where}: skip needs a reason: skip="..."'
    print("\n".join(f"skipped {where}: {why}" for where, why in skipped))
    assert len(skipped) <= 6, "keep skipped blocks very few: " + ", ".join(w for w, _ in skipped)


def test_command_blocks_are_marked_bash_so_that_they_are_run():
    """An unmarked fence whose lines are commands would silently escape this test."""
    for b in ALL_BLOCKS:
        if b.language == "":
            first = [line.split()[0] for line in b.text.splitlines() if line.strip()]
            assert not any(w in ("compressor", "python", "pip", ".venv/bin/python", "./tasks.sh") for w in first), (
                f"{b.id}: commands in an unmarked fence; mark it ```bash"
            )


def test_bash_blocks_have_no_placeholder_syntax():
    """``[--flag]`` or ``a|b`` alternatives cannot run; write one runnable command and name the
    alternatives in a comment."""
    for b in RUN_BLOCKS:
        if b.language != "bash":
            continue
        for line in b.text.splitlines():
            code = line.split(" #", 1)[0]
            assert not re.search(r"\s\[--", code), f"{b.id}: optional [--...] in a command: {line.strip()}"


# --- the scratch checkout -------------------------------------------------------------------
# ``demo`` (the scratch checkout in which ``python -m export demo`` ran) is a session fixture in
# conftest.py: its grayscale bundle is the session's ``gray_bundle_dir``, and
# tests/test_reproducible_export.py compares the bundle it exported with the session's.


@pytest.mark.slow
def test_the_demo_runs_every_step(demo):
    """``./tasks.sh demo`` is ``python -m export demo`` in the venv; here with the session's
    runs in place of the 30-epoch training (the same ``train`` function), every other step real."""
    repo, proc, seconds = demo
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "is up to date" in out and "[2/5]" in out and "[5/5]" in out
    assert "Traceback" not in proc.stderr
    for path in ("bundle/manifest.json", "test_codes.bin", "test_images.npy"):
        assert (repo / "out" / path).is_file(), path
    for path in ("results/this-machine.json", "report/report.md"):
        assert (repo / "out" / path).is_file(), path
    decoded = [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]
    assert {d["runtime"] for d in decoded} >= {"litert", "onnx"}, out
    print(f"demo (training reused) took {seconds:.0f} s")


class Workspace:
    """The scratch checkout, its home folder, the fresh device venv, a broker and the servers."""

    def __init__(self, repo: Path, home: Path, fresh: Path, broker):
        self.repo, self.home, self.fresh, self.broker = repo, home, fresh, broker
        self.ports = {"tcp": _free_port(), "mqtt": int(broker.address.rsplit(":", 1)[1]) if broker else None}
        self.background: list[tuple[Block, subprocess.Popen, Path]] = []
        self.env = dict(
            os.environ,
            HOME=str(home),
            PATH=f"{fresh / 'bin'}{os.pathsep}{os.environ['PATH']}",
            PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
            PYTHONDONTWRITEBYTECODE="1",
        )
        for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
            self.env.pop(key, None)

    def adapt(self, text: str) -> str:
        """Host names and ports -> this machine's; the one change made to a command besides ``replace=``."""

        def port(m):
            kind = PORTS.get(int(m.group(2)))
            assert kind and self.ports[kind], f"no local stand-in for {m.group(0)}"
            return f"127.0.0.1:{self.ports[kind]}"

        return re.sub(r"\b([\w.-]+\.local|0\.0\.0\.0):(\d+)\b", port, text)

    def stop_background(self) -> list[str]:
        problems = []
        for block, proc, log in self.background:
            if proc.poll() is not None:
                problems.append(
                    f"{block.id} exited ({proc.returncode}) while it should serve: {log.read_text()[-2000:]}"
                )
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.background.clear()
        return problems


BASH_PRELUDE = r"""
set -eo pipefail
scp() {  # both devices are this machine: HOST:PATH is $HOME/PATH
  local args=() a
  for a in "$@"; do
    case "$a" in -*) ;; *:*) args+=("$HOME/${a#*:}") ;; *) args+=("$a") ;; esac
  done
  cp -r "${args[@]}"
}
sudo() { echo "docs-test: not run (needs root): sudo $*" >&2; }
set -x
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(demo, gray_bundle_dir, tmp_path_factory):
    from bench.mosquitto import Mosquitto, MosquittoUnavailable
    from compressor.io.files import encode_png

    repo, proc, _ = demo
    if proc.returncode != 0:
        pytest.fail("the demo failed; see test_the_demo_runs_every_step")
    home = tmp_path_factory.mktemp("home")
    digits = to_uint8(mnist5k_test(24, binarize=False))
    np.save(repo / "digits.npy", digits[:16])
    for folder, count in ((repo / "digits", 16), (home / "captures", 8), (repo / "archive" / "a" / "b", 12)):
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"digit{i:02d}.png").write_bytes(encode_png(digits[i]))
    (repo / "shards").mkdir()
    np.save(repo / "shards" / "part0.npy", digits[:10])
    np.save(repo / "shards" / "part1.npy", digits[10:])
    (repo / "bundle-gray").symlink_to(gray_bundle_dir)
    # The ladder's second model (the demo ran without it): the demo's own bundle stands in, so the
    # commands that take a width-0.5 bundle run as written; their figures are not the README's.
    (repo / "out" / "bundle-w0.5").symlink_to("bundle")
    fresh = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(fresh)], check=True)
    try:
        broker = Mosquitto(tmp_path_factory.mktemp("broker")).start()
    except MosquittoUnavailable as e:
        if os.environ.get("COMPRESSOR_REQUIRE_SYSTEM_TESTS") == "1":
            pytest.fail(str(e))
        broker = None
    ws = Workspace(repo, home, fresh, broker)
    yield ws
    ws.stop_background()
    if broker:
        broker.stop()


def _replacements(block: Block) -> list[tuple[str, str]]:
    spec = block.directive.get("replace")
    if not spec:
        return []
    pairs = [p.split("=>", 1) for p in str(spec).split(";")]
    for old, _ in pairs:
        assert old in block.text, f"{block.id}: replace={old!r} is not in the block"
    return [(old, new) for old, new in pairs]


def _script(block: Block, ws: Workspace) -> tuple[list[str], str]:
    text = block.text
    for old, new in _replacements(block):
        text = text.replace(old, new)
    text = ws.adapt(text)
    if block.language == "bash":
        if ws.broker is None and "--broker" in text:
            pytest.skip("no mosquitto here (apt-get install -y mosquitto)")
        return ["bash", "-c", BASH_PRELUDE + text], text
    given = [GIVEN[g] for g in filter(None, str(block.directive.get("given", "")).split(","))]
    code = "\n".join(["import numpy as np", *given, text])
    return [str(ws.repo / ".venv" / "bin" / "python"), "-c", code], text


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[b.id for b in RUN_BLOCKS])
def test_documented_block_runs_as_written(block, workspace, tmp_path):
    if "skip" in block.directive:
        pytest.skip(str(block.directive["skip"]))
    ws = workspace
    cmd, text = _script(block, ws)
    timeout = float(block.directive.get("timeout", 900))
    if "background" in block.directive:
        log = tmp_path / "server.log"
        with log.open("w") as f:
            proc = subprocess.Popen(
                cmd, cwd=ws.repo, env=ws.env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
            )
        ws.background.append((block, proc, log))
        ready, deadline = str(block.directive.get("ready", "")), time.monotonic() + 120
        while ready not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None and ready in log.read_text(), f"{block.id} did not start:\n{log.read_text()}"
        return
    try:
        done = subprocess.run(cmd, cwd=ws.repo, env=ws.env, capture_output=True, text=True, timeout=timeout)
    finally:
        problems = ws.stop_background()
    report = f"{block.id}:\n{text}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-6000:]}"
    assert done.returncode == 0, report
    assert "Traceback" not in done.stderr, report
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_readme_figures_measures_every_section_on_the_demo_output(workspace):
    """The one run that gives the README's figures works on what the demo wrote."""
    cmd = [".venv/bin/python", "-m", "bench.readme_figures", "out/", "--gray", "bundle-gray", "--rounds", "20"]
    done = subprocess.run(
        [*cmd, "--json", "out/figures.json"], cwd=workspace.repo, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((workspace.repo / "out" / "figures.json").read_text())
    assert all(r["rows"] and not r["error"] for r in results.values()), results
    assert "not measured" not in done.stdout
    for title in results:
        assert f"### {title}" in done.stdout
    print(done.stdout, done.stderr)
