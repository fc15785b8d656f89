"""compressor report: results of several devices merged side by side into markdown, HTML and plots."""

from __future__ import annotations

import html.parser
import json
import re

import pytest

from bench import report, schema
from bench.__main__ import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def two_results(bench_result_file):
    """A real result from this machine and a hand-made second device (a Pi with LiteRT only)."""
    real = bench_result_file
    pi = json.loads(real.read_text())
    pi["device"].update(
        name="pi-5",
        arch="aarch64",
        cpu_model="Raspberry Pi 5 Model B Rev 1.0 (Cortex-A76)",
        runtimes={"litert": "2.3.0", "tflite": None, "onnx": None},
        onnx_providers=None,
        cpu_governor="ondemand",
        temperature_c=58.2,
        raspberry_pi={
            "model": "Raspberry Pi 5 Model B Rev 1.0",
            "throttled": {"raw": "0x80000", "soft_temperature_limit_occurred": True},
        },
    )
    rows = []
    for row in pi["latency"]:
        if row["runtime"] == "onnx":
            continue
        if row["status"] == "ok":  # a slower machine: every time x4
            t = {k: v if k == "count" else v * 4 for k, v in row["inference_time_us"].items()}
            row = dict(row, inference_time_us=t, us_per_image=row["us_per_image"] * 4)
        rows.append(row)
    missing = {"runtime": "onnx", "format": "onnx", "precision": None, "batch": None, "num_threads": None}
    rows += [
        {**missing, "component": c, "device": "cpu", "provider": None}
        | {"status": "not available", "reason": "onnxruntime is not installed"}
        for c in ("encoder", "decoder", "codec")
    ]
    pi["latency"] = rows
    pi["classical"] = {"status": "not available", "reason": "Pillow is not installed", "codecs": []}
    path = real.parent / "pi.json"
    path.write_text(json.dumps(pi))
    schema.check(pi)
    return real, path


def test_report_places_devices_side_by_side(two_results, tmp_path):
    real, pi = two_results
    this = json.loads(real.read_text())["device"]["name"]
    out = report.write_report([real, pi], tmp_path / "report")
    md = (out / "report.md").read_text()
    for section in ("## Devices", "## Targets", "## Latency", "## Rate–distortion", "## Our codec and the classical"):
        assert section in md
    headers = [line for line in md.splitlines() if line.startswith("| ") and "pi-5" in line]
    assert headers and all(line.index(this) < line.index("pi-5") for line in headers)
    row = next(line for line in md.splitlines() if line.startswith("| decoder | litert int8 b64 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    mine, theirs = (float(c.split()[0]) for c in cells[2:4])
    assert theirs == pytest.approx(4 * mine, rel=0.01)  # the same row of each device, in one line
    onnx = next(line for line in md.splitlines() if line.startswith("| decoder | onnx int8 b64 |"))
    assert onnx.rstrip().endswith("| – |")  # measured here, absent on the Pi
    assert "pi-5: onnx: onnxruntime is not installed" in md
    assert "0x80000 (soft_temperature_limit_occurred)" in md
    assert "pi-5: Pillow is not installed" in md


def test_report_draws_the_figures_it_links(two_results, tmp_path):
    out = report.write_report(list(two_results), tmp_path / "r")
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert set(linked) == {"latency.png", "rate_distortion.png", "reconstructions.png"}
    assert set(re.findall(r'<img src="([^"]+)"', page)) == set(linked)
    for name in linked:
        assert (out / name).read_bytes()[:8] == PNG
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<table>") == sum(1 for line in md.splitlines() if line.startswith("|---"))


def test_report_command_and_duplicate_device_names(two_results, tmp_path, capsys):
    real, _ = two_results
    twin = tmp_path / "again.json"
    twin.write_text(real.read_text())
    assert main(["report", str(real), str(twin), "-o", str(tmp_path / "out")]) == 0
    assert "report.md" in capsys.readouterr().out
    md = (tmp_path / "out" / "report.md").read_text()
    name = json.loads(real.read_text())["device"]["name"]
    assert f"{name} (this)" in md and f"{name} (again)" in md


def test_report_refuses_a_broken_file_and_names_it(two_results, tmp_path, capsys):
    real, _ = two_results
    broken = json.loads(real.read_text())
    del broken["rate_distortion"]["steps"][0]["stream_bytes_per_image"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    assert main(["report", str(real), str(bad), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "bad.json: rate_distortion.steps[0]: missing required key 'stream_bytes_per_image'" in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(schema.ResultFileError, match="text.json is not valid JSON"):
        report.write_report([tmp_path / "text.json"], tmp_path / "out")


class _Tables(html.parser.HTMLParser):
    """Headings and table cells of an HTML page, as text (an independent reading of report.html)."""

    def __init__(self):
        super().__init__()
        self.headings, self.tables, self._text, self._in = [], [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th", "h1", "h2", "h3"):
            self._text, self._in = [], tag

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag != self._in:
            return
        text = "".join(self._text)
        if tag in ("td", "th"):
            self.tables[-1][-1].append(text)
        else:
            self.headings.append(text)
        self._text = self._in = None


def _markdown_tables(md: str) -> list[list[list[str]]]:
    tables, current = [], None
    for line in md.splitlines():
        if line.startswith("|---"):
            continue
        if line.startswith("| "):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if current is None:
                current = []
                tables.append(current)
            current.append(cells)
        else:
            current = None
    return tables


def test_the_html_report_shows_the_same_headings_and_table_cells_as_the_markdown(two_results, tmp_path):
    out = report.write_report(list(two_results), tmp_path / "r")
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    md = re.sub(r"^```\n.*?^```$", "", md, flags=re.S | re.M)  # code blocks hold '# device' comment lines
    parsed = _Tables()
    parsed.feed(page)
    assert parsed.headings == [h.lstrip("#").strip() for h in md.splitlines() if h.startswith("#")]
    assert parsed.tables == _markdown_tables(md)
    assert len(parsed.tables) >= 5 and any("pi-5" in cell for cell in parsed.tables[0][0])
    assert "<script" not in page  # a static page: nothing runs when it is opened
