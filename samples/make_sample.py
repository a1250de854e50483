"""Build ``samples/configmgr_site.pcap`` and ``samples/site.yaml``: a small ConfigMgr site.

Usage: ``python samples/make_sample.py [FOLDER]`` (default: this folder; needs scapy). The
capture is committed so that ``flowaudit analyze samples/configmgr_site.pcap --site
samples/site.yaml`` needs nothing but flowaudit; rebuilding gives the same bytes (fixed clock,
ports and seeds). Hosts, flows and the planted problems are described in ``README.md`` here;
the conversations themselves are the scenario ``sample`` of ``tests/scenarios/build.py``,
and ``tests/scenarios/sample.yaml`` lists what flowaudit must make of every flow.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.scenarios.build import build  # noqa: E402  (after the path is set)

CAPTURE_NAME = "configmgr_site.pcap"


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path(__file__).resolve().parent
    built = build("sample", folder, CAPTURE_NAME)
    print(f"wrote {built.capture} ({built.packets} packets) and {built.site}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
