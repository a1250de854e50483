"""The HTML report in a real browser (headless Chromium, from its command line): the page's own
script runs, nothing from a hostile capture does, hostile text shows as text, a filter in the
URL fragment hides the rows it does not match, and a screenshot renders.

``FLOWAUDIT_SCREENSHOT=PATH`` also saves a screenshot of the bundled sample's report there (the
README's picture, docs/html-report.png).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from flowaudit.audit import audit
from flowaudit.config import FlowConfig
from flowaudit.flows import build_flow_table
from flowaudit.site import load_site
from tests.conftest import REPO
from tests.report.test_html import (
    CLIENT,
    DP,
    HOSTILE_PATH,
    HOSTILE_SNI,
    MP,
    OUTSIDER,
    SITE_SERVER,
    Node,
    audit_folder,
    capture_folder,
    hostile_report,
    html_of,
    parse,
    site_packets,
)
from tests.scapy_flows import write_capture
from tests.test_cli_analyze import SITE_YAML

CHROMIUM_TIMEOUT = 60  # seconds
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
README_WINDOW = (1280, 1500)


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not on PATH (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    return found


def run_chromium(chromium: str, profile: Path, url: str, *arguments: str) -> str:
    """Chromium's stdout for ``url``: headless, offline, in a profile of its own."""
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *arguments,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dumped_dom(chromium: str, profile: Path, url: str) -> Node:
    """The page's DOM after its scripts ran, as Chromium serialises it."""
    dom = run_chromium(chromium, profile, url, "--dump-dom")
    assert "<body" in dom, dom[:500]
    return parse(dom).root


def screenshot(chromium: str, profile: Path, url: str, png: Path, size: tuple[int, int]) -> bytes:
    run_chromium(
        chromium, profile, url, f"--screenshot={png}", f"--window-size={size[0]},{size[1]}"
    )
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    # the IHDR chunk: width and height, big-endian, right after the signature and chunk header
    assert int.from_bytes(data[16:20], "big") == size[0]
    assert int.from_bytes(data[20:24], "big") == size[1]
    return data


def flow_rows(page: Node) -> list[Node]:
    return page.by_id("flow-table").find_all("tbody")[0].find_all("tr")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hostile_report(tmp_path_factory.mktemp("hostile"))


def test_own_script_runs_and_the_capture_does_not(
    chromium: str, report: Path, tmp_path: Path
) -> None:
    page = dumped_dom(chromium, tmp_path / "profile", report.as_uri())
    body = page.find_all("body")[0]
    assert body.attrs.get("data-ready") == "1"  # scripts are on, and the page's own ran
    assert "data-pwned" not in body.attrs
    assert not any("data-pwned" in node.attrs for node in page.walk())
    assert "pwned" not in page.find_all("title")[0].text()
    assert not page.find_all("img") and not page.find_all("svg")
    # the payloads are on the page as text, in the findings and in the flow table
    assert HOSTILE_PATH in page.by_id("findings").text()
    table = page.by_id("flow-table").text()
    assert HOSTILE_PATH in table and HOSTILE_SNI in table
    assert page.by_id("flow-count").text() == f"{len(flow_rows(page))} flows"


def test_filter_in_the_url_fragment_hides_other_rows(
    chromium: str, report: Path, tmp_path: Path
) -> None:
    everything = flow_rows(dumped_dom(chromium, tmp_path / "all", report.as_uri()))
    assert not any("hidden" in row.attrs for row in everything)
    smb = [row for row in everything if "smb" in row.text().lower()]
    assert 0 < len(smb) < len(everything)

    page = dumped_dom(chromium, tmp_path / "smb", report.as_uri() + "#filter=smb")
    rows = flow_rows(page)
    shown = [row.attrs["id"] for row in rows if "hidden" not in row.attrs]
    assert shown == [row.attrs["id"] for row in smb]
    assert all("smb" not in row.text().lower() for row in rows if "hidden" in row.attrs)
    assert page.by_id("flow-count").text() == f"{len(smb)} of {len(rows)} flows"

    page = dumped_dom(chromium, tmp_path / "verdict", report.as_uri() + "#verdict=unexpected")
    rows = flow_rows(page)
    shown_rows = [row for row in rows if "hidden" not in row.attrs]
    assert shown_rows and len(shown_rows) < len(rows)
    assert all("unexpected" in row.classes for row in shown_rows)
    assert all("unexpected" not in row.classes for row in rows if "hidden" in row.attrs)


def test_screenshot_renders(chromium: str, report: Path, tmp_path: Path) -> None:
    data = screenshot(
        chromium, tmp_path / "profile", report.as_uri(), tmp_path / "shot.png", (1400, 1800)
    )
    assert len(data) > 30_000  # a rendered page, not a blank one


def test_readme_screenshot_of_the_sample(chromium: str, tmp_path: Path) -> None:
    target = os.environ.get("FLOWAUDIT_SCREENSHOT")
    if not target:
        pytest.skip("FLOWAUDIT_SCREENSHOT is not set")
    sample = REPO / "samples"
    table = build_flow_table([sample / "configmgr_site.pcap"], FlowConfig(sha256=True))
    result = audit(table, load_site(sample / "site.yaml"))
    result.command = [
        "flowaudit",
        "analyze",
        "samples/configmgr_site.pcap",
        "--site",
        "samples/site.yaml",
        "--format",
        "html",
        "-o",
        "report.html",
    ]
    # paths as the README's command names them, not as this machine holds them
    result.captures[0].path = "samples/configmgr_site.pcap"
    result.site.path = "samples/site.yaml"
    page = tmp_path / "report.html"
    page.write_text(html_of(result), encoding="utf-8")
    png = Path(target)
    png.parent.mkdir(parents=True, exist_ok=True)
    screenshot(chromium, tmp_path / "profile", page.as_uri(), png, README_WINDOW)


# What the sort test adds to the page's script (and so to its CSP hash): click the "bytes"
# header twice (descending), then "client" once, and leave the orders on <body>.
CLICK_HEADERS = """
const headers = document.querySelectorAll("#flow-table thead button");
const rows = () => document.querySelectorAll("#flow-table tbody tr");
const column = (index) => Array.from(rows(), (row) => row.cells[index].textContent);
const bytesAt = Array.from(headers, (button) => button.textContent).indexOf("bytes");
headers[bytesAt].click();
headers[bytesAt].click();
document.body.dataset.bytes = column(bytesAt).join(",");
headers[2].click();
document.body.dataset.clients = column(2).join(",");
"""


def test_clicking_a_header_sorts(
    chromium: str, report: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowaudit.report import html

    page_block = html._static_block

    def with_clicks(environment: Any, name: str, closing_tag: str) -> str:
        text = page_block(environment, name, closing_tag)
        return text + CLICK_HEADERS if name == html.SCRIPT else text

    monkeypatch.setattr(html, "_static_block", with_clicks)
    capture_folder(tmp_path, hostile=False)
    page = tmp_path / "sorted.html"
    page.write_text(html_of(audit_folder(tmp_path)), encoding="utf-8")
    body = dumped_dom(chromium, tmp_path / "profile", page.as_uri()).find_all("body")[0]
    sizes = [int(size) for size in (body.attrs["data-bytes"] or "").split(",")]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) > 1
    clients = (body.attrs["data-clients"] or "").split(",")
    # addresses by number, not as text: 10.10.0.9 before 10.10.0.13
    assert clients == sorted(
        clients, key=lambda end: tuple(int(part) for part in end.replace(":", ".").split("."))
    )


# What the address filter test adds to the page's script: each pattern typed into the filter
# (applied as the verdict control applies it), and the ids of the rows left shown on <body>.
FILTER_PATTERNS = """
const search = document.getElementById("flow-filter");
const verdict = document.getElementById("flow-verdict");
const shown = {};
for (const pattern of PATTERNS) {
  search.value = pattern;
  verdict.dispatchEvent(new Event("change"));
  shown[pattern] = Array.from(
    document.querySelectorAll("#flow-table tbody tr:not([hidden])"),
    (row) => row.id.slice(5),
  ).join(",");
}
document.body.dataset.shown = JSON.stringify(shown);
"""


def test_address_filter_matches_exact_prefix_and_network(
    chromium: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    from flowaudit.report import html

    ipv6 = Ether() / IPv6(src="fd00::21", dst="fd00:0:0:1::12") / UDP(sport=50010, dport=9999)
    ipv6.time = 1_700_000_020.0
    write_capture(tmp_path / "site.pcap", [*site_packets(), ipv6])
    (tmp_path / "site.yaml").write_text(SITE_YAML)
    result = audit_folder(tmp_path)
    ends = {flow["id"]: (flow["client"], flow["server"]) for flow in result.flows}
    assert len(ends) == 5
    patterns = {
        # pattern: the addresses it must find (every flow with one of them at an end)
        "host:10.10.0.13": {DP},  # exact
        "host:10.10.0.1": set(),  # exact: neither 10.10.0.10, .12 nor .13
        '"10.10.0.10"': {SITE_SERVER},
        "host:10.10.1.": {CLIENT},  # a prefix
        "host:10.10.1": {CLIENT},  # fewer than four parts: a prefix of whole parts
        "host:10.10.0.8/30": {SITE_SERVER, OUTSIDER},  # .8 to .11
        "host:10.10.0.0/16": {CLIENT, MP, DP, SITE_SERVER, OUTSIDER} - {CLIENT},
        "host:fd00::/64": {"fd00::21"},
        "host:fd00::/48": {"fd00::21", "fd00:0:0:1::12"},
        "host:fd00:0::21": {"fd00::21"},  # the same address, written otherwise
        "host:FD00:": {"fd00::21", "fd00:0:0:1::12"},
    }
    expected = {
        pattern: ",".join(str(flow_id) for flow_id, pair in ends.items() if wanted & {*pair})
        for pattern, wanted in patterns.items()
    }
    page_block = html._static_block
    typed = FILTER_PATTERNS.replace("PATTERNS", json.dumps(list(patterns)))

    def with_patterns(environment: Any, name: str, closing_tag: str) -> str:
        text = page_block(environment, name, closing_tag)
        return text + typed if name == html.SCRIPT else text

    monkeypatch.setattr(html, "_static_block", with_patterns)
    page = tmp_path / "filtered.html"
    page.write_text(html_of(result), encoding="utf-8")
    body = dumped_dom(chromium, tmp_path / "profile", page.as_uri()).find_all("body")[0]
    assert json.loads(body.attrs["data-shown"] or "{}") == expected
