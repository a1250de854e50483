"""The HTML report: one self-contained page naming every input, the role x role picture, the
findings with their flows, one table row per flow; text from a hostile capture stays text, and
nothing on the page runs but its own script, allowed by the Content-Security-Policy's hashes."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from flowaudit import __version__
from flowaudit.audit import AuditResult, audit
from flowaudit.baseline import apply_accept, load_accept, load_report, mark_baseline
from flowaudit.cli import cli
from flowaudit.config import FlowConfig
from flowaudit.flows import build_flow_table
from flowaudit.report.audit import write_json
from flowaudit.report.html import write_html
from flowaudit.signatures import load_signatures
from flowaudit.site import load_site
from tests.protobytes import http, smb, tls
from tests.scapy_flows import tcp_session, write_capture
from tests.test_cli_analyze import SITE_YAML

CLIENT, MP, DP, SITE_SERVER = "10.10.1.21", "10.10.0.12", "10.10.0.13", "10.10.0.10"
OUTSIDER = "10.10.0.9"  # in no role of the site: its flows are "unknown"
# What a hostile capture carries: each payload, if it ever ran, would leave a marker the
# browser test looks for (the title, or a data-pwned attribute on <body>).
HOSTILE_PATH = "/<script>document.title='pwned'</script>"
HOSTILE_HOST = "\"><img src=x onerror=document.body.setAttribute('data-pwned','host')>"
HOSTILE_AGENT = (
    "ConfigMgr Messaging HTTP Sender \"><svg onload=document.body.setAttribute('data-pwned','ua')>"
)
HOSTILE_SNI = "<script>document.title='pwned'</script>.example"
RIGHT_TO_LEFT_OVERRIDE = "\u202e"
# The override as it is on the wire (UTF-8), in a header value that http_request writes as
# latin-1 text: the dissector decodes it back to U+202E.
HOSTILE_SHARE_NAME = "gpj." + RIGHT_TO_LEFT_OVERRIDE.encode().decode("latin-1") + "exe.txt"
ESCAPED_SCRIPT = "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"
SIGNATURES_DOCS = {rule.url for rule in load_signatures().findings.values()}


# --- captures and results -------------------------------------------------------------------


def site_packets() -> list[Any]:
    """An expected HTTPS flow, a plaintext policy request, SMB started by the wrong side, and a
    flow from a host of no role."""
    return [
        *tcp_session(CLIENT, MP, 50001, 443, [("c", tls.tls_client_hello("mp01"))]),
        *tcp_session(
            CLIENT,
            MP,
            50002,
            80,
            [("c", http.ccm_post(host="mp01")), ("s", http.http_response())],
            start=1_700_000_001.0,
        ),
        *tcp_session(
            DP,
            SITE_SERVER,
            50003,
            445,
            smb.smb2_conversation(server_signing_required=True),
            start=1_700_000_002.0,
        ),
        *tcp_session(OUTSIDER, MP, 50004, 8443, [("c", b"\x00\x01")], start=1_700_000_003.0),
    ]


def hostile_packets() -> list[Any]:
    """HTTP whose path, Host and User-Agent are markup, and a TLS ClientHello whose SNI is."""
    request = http.http_request(
        "GET",
        HOSTILE_PATH,
        (
            ("Host", HOSTILE_HOST),
            ("User-Agent", HOSTILE_AGENT + " " + HOSTILE_SHARE_NAME),
        ),
    )
    return [
        *tcp_session(CLIENT, MP, 51001, 80, [("c", request)], start=1_700_000_010.0),
        *tcp_session(
            CLIENT,
            MP,
            51002,
            443,
            [("c", tls.tls_client_hello(HOSTILE_SNI))],
            start=1_700_000_011.0,
        ),
    ]


def capture_folder(folder: Path, *, hostile: bool) -> Path:
    """A capture (``site.pcap``) and its site file (``site.yaml``) in ``folder``."""
    packets = site_packets() + (hostile_packets() if hostile else [])
    write_capture(folder / "site.pcap", packets)
    (folder / "site.yaml").write_text(SITE_YAML)
    return folder


def audit_folder(folder: Path, *, site: bool = True) -> AuditResult:
    table = build_flow_table([folder / "site.pcap"], FlowConfig(sha256=True))
    result = audit(table, load_site(folder / "site.yaml") if site else None)
    result.command = ["flowaudit", "analyze", "site.pcap", "--site", "site.yaml", "-f", "html"]
    return result


def html_of(result: AuditResult) -> str:
    out = io.StringIO()
    write_html(result, out)
    return out.getvalue()


def hostile_report(folder: Path) -> Path:
    """The HTML report of the hostile capture, written to ``folder/report.html``."""
    capture_folder(folder, hostile=True)
    path = folder / "report.html"
    path.write_text(html_of(audit_folder(folder)), encoding="utf-8")
    return path


@pytest.fixture
def site_result(tmp_path: Path) -> AuditResult:
    return audit_folder(capture_folder(tmp_path, hostile=False))


@pytest.fixture
def hostile_html(tmp_path: Path) -> str:
    return hostile_report(tmp_path).read_text(encoding="utf-8")


# --- a small tree of the page, with the standard library's parser ----------------------------


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Node | str] = []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.walk()

    def find_all(self, tag: str, css_class: str | None = None) -> list[Node]:
        return [
            node
            for node in self.walk()
            if node.tag == tag and (css_class is None or css_class in node.classes)
        ]

    def by_id(self, element_id: str) -> Node:
        return next(node for node in self.walk() if node.attrs.get("id") == element_id)


class PageParser(HTMLParser):
    """Builds a ``Node`` tree; closes cells and rows whose end tag HTML lets a page omit."""

    VOID = frozenset({"meta", "link", "br", "input", "img", "hr", "col", "wbr"})
    IMPLIED: ClassVar[dict[str, tuple[str, ...]]] = {
        "td": ("td", "th"),
        "th": ("td", "th"),
        "tr": ("td", "th", "tr"),
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        closes = self.IMPLIED.get(tag, ())
        while self.current.tag in closes:
            assert self.current.parent is not None
            self.current = self.current.parent
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in self.VOID:
            self.current = node

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def inline_blocks(page: str) -> tuple[list[str], list[str]]:
    """The texts of the page's executable <script> blocks and of its <style> blocks."""
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    styles = re.findall(r"<style>(.*?)</style>", page, flags=re.S)
    return scripts, styles


def csp_of(page: str) -> dict[str, list[str]]:
    tags = parse(page).tags
    content = next(
        dict(attrs)["content"]
        for tag, attrs in tags
        if tag == "meta" and dict(attrs).get("http-equiv") == "Content-Security-Policy"
    )
    assert content is not None
    directives = (part.split() for part in content.split(";") if part.strip())
    return {name: values for name, *values in directives}


def sha256_source(block: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'"


# --- the page -------------------------------------------------------------------------------


def test_header_names_every_input(site_result: AuditResult, tmp_path: Path) -> None:
    page = html_of(site_result)
    inputs = parse(page).root.by_id("inputs").text()
    capture = site_result.captures[0]
    assert capture.sha256 is not None and len(capture.sha256) == 64
    for shown in (
        capture.sha256,
        capture.path,
        f"{capture.packets}",
        site_result.site.sha256,
        str(tmp_path / "site.yaml"),
        "https-or-ehttp",
        "PS1",
        f"flowaudit {__version__}",
        site_result.run_id,
        site_result.generated_at,
        "flowaudit analyze site.pcap --site site.yaml -f html",
        *site_result.signatures_sha256.values(),
    ):
        assert shown in inputs, shown
    assert "2023-11-14T22:13:20" in inputs  # the capture's time span
    assert "Site PS1" in parse(page).root.find_all("h1")[0].text()


def test_inferred_roles_are_said_so(tmp_path: Path) -> None:
    result = audit_folder(capture_folder(tmp_path, hostile=False), site=False)
    page = parse(html_of(result)).root
    assert "roles inferred from traffic" in page.find_all("header")[0].text()
    assert "No site file: roles inferred from traffic" in page.by_id("inputs").text()


def test_title_and_heading_name_the_captures_and_the_site(tmp_path: Path) -> None:
    result = audit_folder(capture_folder(tmp_path, hostile=False), site=False)
    page = parse(html_of(result)).root
    # without a site file: the capture, by its file name
    assert page.find_all("title")[0].text() == f"flowaudit report: site.pcap, {result.generated_at}"
    assert page.find_all("h1")[0].text() == "site.pcap"
    result = audit_folder(tmp_path)
    page = parse(html_of(result)).root
    assert page.find_all("title")[0].text() == (
        f"flowaudit report: site PS1, site.pcap, {result.generated_at}"
    )
    assert page.find_all("h1")[0].text() == "Site PS1: site.pcap"
    # a site file without a site code is named by its file; many captures by the first two
    result.site.name = None
    result.captures = [replace(result.captures[0], path=f"/x/part{n}.pcap") for n in range(5)]
    title = parse(html_of(result)).root.find_all("title")[0].text()
    assert title.startswith("flowaudit report: site site.yaml, part0.pcap, part1.pcap and 3 more")


def test_counts_of_none_raise_no_alarm(tmp_path: Path) -> None:
    # one flow the matrix allows, over TLS: no unexpected flow, no finding
    packets = tcp_session(CLIENT, MP, 50001, 443, [("c", tls.tls_client_hello("mp01"))])
    write_capture(tmp_path / "site.pcap", packets)
    (tmp_path / "site.yaml").write_text(SITE_YAML)
    result = audit_folder(tmp_path)
    assert result.summary()["verdicts"] == {"expected": 1, "unexpected": 0, "unknown": 0}
    assert not result.findings
    cards = parse(html_of(result)).root.by_id("summary")
    chips = {chip.text(): chip.classes for chip in cards.find_all("span", "chip")}
    assert chips == {
        "1 expected": {"chip", "expected"},
        "0 unexpected": {"chip", "zero"},  # grey, not the red of an unexpected flow
        "0 unknown": {"chip", "zero"},
    }
    assert not [card for card in cards.find_all("div", "card") if "card-alert" in card.classes]
    assert not cards.find_all("span", "badge")  # no severity badge at all
    assert [node.text() for node in cards.find_all("span", "ok")] == ["none"]


def test_role_matrix_has_a_cell_for_each_communication(site_result: AuditResult) -> None:
    matrix = parse(html_of(site_result)).root.find_all("table", "matrix")[0]
    servers = [th.text() for th in matrix.find_all("th", "server-role")]
    cells: dict[tuple[str, str], Node] = {}
    for row in matrix.find_all("tbody")[0].find_all("tr"):
        client = row.find_all("th")[0].text()
        for server, cell in zip(servers, row.find_all("td"), strict=True):
            cells[(client, server)] = cell
    assert len(site_result.communications) == 4
    expected_classes = {("tcp", 443): "expected", ("tcp", 80): "plaintext"}
    worst = ("unexpected", "plaintext", "unknown", "expected")
    for communication in site_result.communications:
        pair = (
            communication["client_role"] or "no role",
            communication["server_role"] or "no role",
        )
        cell = cells[pair]
        chips = [chip for chip in cell.walk() if "chip" in chip.classes]
        service, port, proto = (communication[k] for k in ("service", "port", "proto"))
        label = service + (f"{port}/{proto}" if port is not None else proto)
        chip = next(chip for chip in chips if chip.text().startswith(label))
        verdict = communication["verdict"]
        wanted = expected_classes.get((communication["proto"], communication["port"]), verdict)
        assert wanted in chip.classes, (pair, label, chip.classes)
        chip_classes = [next(c for c in worst if c in other.classes) for other in chips]
        assert min(chip_classes, key=worst.index) in cell.classes
        assert chip.attrs["href"] == "#ids=" + ",".join(map(str, communication["flow_ids"]))
    # the wrong-direction SMB and the host of no role
    assert "unexpected" in cells[("distribution-point", "site-server")].classes
    assert "unknown" in cells[("no role", "management-point")].classes
    assert "empty" in cells[("no role", "site-server")].classes
    legend = parse(html_of(site_result)).root.find_all("ul", "legend")[0].text()
    for verdict in worst:
        assert verdict in legend


def test_each_finding_shows_its_evidence(site_result: AuditResult) -> None:
    page = parse(html_of(site_result)).root
    findings = page.by_id("findings").find_all("article", "finding")
    assert [article.attrs["id"] for article in findings] == [f.id for f in site_result.findings]
    rules = load_signatures().findings
    flows = {flow["id"]: flow for flow in site_result.flows}
    assert {f.rule for f in site_result.findings} >= {"plaintext-http", "wrong-direction"}
    for finding, article in zip(site_result.findings, findings, strict=True):
        text = " ".join(article.text().split())
        assert f"sev-{finding.severity}" in article.classes
        for shown in (finding.id, finding.severity, finding.rule, finding.title, finding.detail):
            assert " ".join(shown.split()) in text
        assert " ".join(finding.reference.split()) in text
        assert " ".join(rules[finding.rule].help.split()) in text
        links = [a for a in article.find_all("a") if a.attrs["href"] == rules[finding.rule].url]
        assert links and links[0].attrs["rel"] == "noreferrer"
        evidence = article.find_all("table", "evidence")[0]
        rows = [row for row in evidence.find_all("tr") if row.find_all("a")]
        assert [row.find_all("a")[0].attrs["href"] for row in rows] == [
            f"#flow-{flow_id}" for flow_id in finding.flow_ids
        ]
        for row, flow_id in zip(rows, finding.flow_ids, strict=True):
            flow = flows[flow_id]
            cells = [cell.text() for cell in row.find_all("td")]
            client, server = (f"{flow[end]}:{flow[end + '_port']}" for end in ("client", "server"))
            assert cells[1] == f"{client} → {server}"
            assert cells[2] == f"{flow['service']}/{flow['proto']}"
            assert cells[4:10] == [
                flow["first_seen"],
                flow["last_seen"],
                str(flow["packets"]),
                str(flow["bytes"]),
                f"{flow['first_frame']}–{flow['last_frame']}",
                flow["file"],
            ]


def test_flow_table_has_one_row_per_flow(site_result: AuditResult) -> None:
    page = html_of(site_result)
    table = parse(page).root.by_id("flow-table")
    rows = table.find_all("tbody")[0].find_all("tr")
    assert [row.attrs["id"] for row in rows] == [f"flow-{flow['id']}" for flow in site_result.flows]
    for row, flow in zip(rows, site_result.flows, strict=True):
        assert flow["verdict"] in row.classes
        assert ("plaintext" in row.classes) == flow["plaintext"]
        cells = [cell.text() for cell in row.find_all("td")]
        assert cells[:8] == [
            str(flow["id"]),
            flow["proto"],
            f"{flow['client']}:{flow['client_port']}",
            f"{flow['server']}:{flow['server_port']}",
            flow["service"] + (" plaintext" if flow["plaintext"] else ""),
            flow["client_role"] or "no role",
            flow["server_role"] or "no role",
            flow["verdict"],
        ]
    by_flow = {flow_id: f.id for f in site_result.findings for flow_id in f.flow_ids}
    for row in rows:
        flow_id = int(row.attrs["id"].removeprefix("flow-"))  # type: ignore[union-attr]
        if flow_id in by_flow:
            assert by_flow[flow_id] in row.find_all("td")[8].text()
    # sortable headers are buttons (the script listens on them), and the controls exist
    assert len(table.find_all("button")) == len(table.find_all("th"))
    assert page.count('id="flow-filter"') == page.count('id="flow-verdict"') == 1


def test_accepted_and_baseline_status(site_result: AuditResult, tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    with old.open("w") as out:
        write_json(replace(site_result, findings=site_result.findings[1:]), out)
    mark_baseline(site_result, load_report(old))
    accept = tmp_path / "accept.yaml"
    accept.write_text(
        "accept:\n"
        "  - rule: wrong-direction\n"
        "    match: {client_role: distribution-point, server_role: site-server}\n"
        "    justification: 'CHG-42: <b>content</b> library move'\n"
        "    expires: 2031-01-31\n"
    )
    apply_accept(site_result, load_accept(accept))
    page = html_of(site_result)
    root = parse(page).root
    accepted = root.by_id("accepted").find_all("article")
    assert [a.attrs["id"] for a in accepted] == [f.id for f in site_result.findings if not f.active]
    assert len(accepted) == 1 and "is-accepted" in accepted[0].classes
    text = accepted[0].text()
    assert "CHG-42: <b>content</b> library move" in text and "expires 2031-01-31" in text
    assert "&lt;b&gt;content&lt;/b&gt;" in page
    open_ids = [a.attrs["id"] for a in root.by_id("findings").find_all("article")]
    assert accepted[0].attrs["id"] not in open_ids
    first = root.by_id(site_result.findings[0].id)
    assert [b.text() for b in first.find_all("span", "status-new")] == ["new"]
    assert any(b.text() == "known" for b in root.find_all("span", "status-known"))
    inputs = root.by_id("inputs").text()
    for kind in ("accept", "baseline"):
        assert site_result.inputs[kind]["sha256"] in inputs
        assert site_result.inputs[kind]["path"] in inputs


def test_cli_writes_the_html_report(tmp_path: Path) -> None:
    capture_folder(tmp_path, hostile=False)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        cli,
        [
            "analyze",
            str(tmp_path / "site.pcap"),
            "--site",
            str(tmp_path / "site.yaml"),
            "--format",
            "html",
            "-o",
            str(out),
            "--fail-on",
            "never",
        ],
        standalone_mode=False,
        catch_exceptions=False,
    )
    assert result.exit_code == 0 and result.stdout == ""  # the report went to the file
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert 'id="flow-table"' in page


# --- hostile text ---------------------------------------------------------------------------


def test_hostile_capture_stays_text(hostile_html: str) -> None:
    assert "<script>document" not in hostile_html
    assert hostile_html.count("<script") == 1  # the page's own
    assert ESCAPED_SCRIPT in hostile_html
    assert "&lt;img src=x onerror=" in hostile_html
    assert "&lt;svg onload=" in hostile_html
    parsed = parse(hostile_html)
    assert not [tag for tag, _ in parsed.tags if tag in ("img", "svg", "iframe", "object")]
    # the hostile strings are findings' details and flows' facts, shown as text
    findings = parsed.root.by_id("findings").text()
    assert HOSTILE_PATH in findings
    assert "data-pwned','ua')>" in findings
    table = parsed.root.by_id("flow-table").text()
    assert HOSTILE_SNI in table and HOSTILE_PATH in table
    # a bidi override is shown as its escape, never as the character that reorders the page
    assert RIGHT_TO_LEFT_OVERRIDE not in hostile_html
    assert "gpj.\\u202eexe.txt" in table


def test_no_attribute_runs_code_or_loads_anything(hostile_html: str) -> None:
    for tag, attrs in parse(hostile_html).tags:
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name, value)
            if name in ("src", "href", "action", "formaction", "srcset", "poster", "data"):
                value = (value or "").strip().lower()
                if value.startswith(("http:", "https:", "//")):
                    assert tag == "a" and name == "href" and value in SIGNATURES_DOCS, value
                    assert dict(attrs)["rel"] == "noreferrer"
                assert not value.startswith(("javascript:", "file:")), (tag, name, value)
                if tag != "a":
                    assert value.startswith(("data:", "#")), (tag, name, value)
    assert "@import" not in hostile_html and "url(" not in hostile_html


def test_content_security_policy_allows_only_the_pages_own_blocks(hostile_html: str) -> None:
    policy = csp_of(hostile_html)
    scripts, styles = inline_blocks(hostile_html)
    assert len(scripts) == 1 and len(styles) == 1
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == [sha256_source(block) for block in scripts]
    assert policy["style-src"] == [sha256_source(block) for block in styles]
    assert policy["img-src"] == ["data:"]
    assert "'unsafe-inline'" not in str(policy) and "'unsafe-eval'" not in str(policy)
    # the only other script element holds data, never code
    assert not re.search(r"<script(?![^>]*application/json)[^>]*\ssrc=", hostile_html)


# --- size -----------------------------------------------------------------------------------


def test_thirty_thousand_flows_stay_lean(site_result: AuditResult) -> None:
    """A big capture: one lean <tr> per flow (how fast it is written is the benchmark's to
    measure)."""
    count = 30_000
    columns = site_result.flow_columns
    base = len(columns["id"])
    big_columns: dict[str, list[Any]] = {}
    for name, values in columns.items():
        values = list(values.tolist() if hasattr(values, "tolist") else values)
        big_columns[name] = [values[k % base] for k in range(count)]
    big_columns["id"] = list(range(1, count + 1))
    big_columns["first_seen"] = [
        "2023-11-14T22:13:20.000000Z" for _ in range(count)
    ]  # (text: the result's records keep what they are given)
    big_columns["last_seen"] = big_columns["first_seen"]
    big = replace(site_result, flow_columns=big_columns)
    page = html_of(big)
    table = page[page.index('id="flow-table"') :]
    assert table.count('<tr id="flow-') == count
    # (each row offers its Wireshark filter to copy: about 230 of these bytes, both directions
    # of the flow spelled out so that the filter selects its frames exactly)
    assert len(page.encode()) / count < 800, len(page.encode()) / count
