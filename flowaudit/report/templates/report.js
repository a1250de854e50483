// The flow table of the HTML report: sort by a column (click its header), filter by text and
// verdict, and take a filter from the URL fragment (#filter=smb&verdict=unexpected&ids=1,2)
// so that a link can point at a filtered view. Reads the table the page already holds; never
// writes markup (only attributes and textContent).
(() => {
  "use strict";
  const table = document.getElementById("flow-table");
  const search = document.getElementById("flow-filter");
  const verdict = document.getElementById("flow-verdict");
  const reset = document.getElementById("flow-reset");
  const count = document.getElementById("flow-count");
  const section = document.getElementById("flows");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows); // in the report's order; the DOM order follows sorting
  const verdicts = new Set(Array.from(verdict.options, (option) => option.value));
  const fragmentKeys = ["filter", "verdict", "ids"];
  let texts = null; // each row's text, lower case, made on the first filter
  let onlyIds = null; // row ids of an #ids= fragment
  let typing = 0;

  const rowTexts = () => {
    if (texts === null) {
      texts = rows.map((row) => row.textContent.toLowerCase());
    }
    return texts;
  };

  // Address terms: host:ADDR or "ADDR" matches a row whose client or server address (the
  // cells under a header of data-type "address", port left out) is ADDR, no more (10.0.0.1 is
  // not 10.0.0.10); host:10.0.0. or host:10.0.0 (fewer than four parts) every address that
  // begins so (10.0.0.5, not 10.0.0x); host:10.0.0.0/24 or host:fd00::/64 every address in the
  // network. Any other term matches anywhere in the row.
  const addressColumns = Array.from(table.tHead.rows[0].cells)
    .filter((cell) => {
      const button = cell.querySelector("button");
      return button !== null && button.dataset.type === "address";
    })
    .map((cell) => cell.cellIndex);
  let addresses = null; // each row's client and server addresses, made on the first use
  const addressOf = (text) => {
    const value = text.trim().toLowerCase();
    const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(value);
    if (bracketed) {
      return bracketed[1];
    }
    const plain = /^([^:]+):\d+$/.exec(value);
    return plain ? plain[1] : value;
  };
  const rowAddresses = () => {
    if (addresses === null) {
      addresses = rows.map((row) =>
        addressColumns.map((column) => addressOf(row.cells[column].textContent)),
      );
    }
    return addresses;
  };
  // An address as its bytes (4 for IPv4, 16 for IPv6), or null for anything else.
  const ipv4Bytes = (text) => {
    const parts = text.split(".");
    const valid = parts.length === 4 && parts.every((part) => /^\d{1,3}$/.test(part));
    return valid && parts.every((part) => +part < 256) ? parts.map(Number) : null;
  };
  const ipv6Bytes = (text) => {
    const halves = text.split("::");
    if (!text.includes(":") || halves.length > 2) {
      return null;
    }
    const groups = (half) =>
      (half === "" ? [] : half.split(":")).flatMap((group) => {
        const ipv4 = group.includes(".") ? ipv4Bytes(group) : null; // ::ffff:10.0.0.5
        const words = ipv4 ? [ipv4[0] * 256 + ipv4[1], ipv4[2] * 256 + ipv4[3]] : null;
        return words ? words.map((word) => word.toString(16)) : [group];
      });
    const left = groups(halves[0]);
    const right = halves.length === 2 ? groups(halves[1]) : [];
    const missing = 8 - left.length - right.length;
    if (halves.length === 2 ? missing < 1 : missing !== 0) {
      return null;
    }
    const words = [...left, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...right];
    if (!words.every((word) => /^[0-9a-f]{1,4}$/.test(word))) {
      return null;
    }
    return words.flatMap((word) => [parseInt(word, 16) >> 8, parseInt(word, 16) & 255]);
  };
  const bytesOf = (text) => ipv4Bytes(text) || ipv6Bytes(text);
  const sameBits = (one, other, bits) =>
    one.length === other.length &&
    one.every((byte, index) => {
      const kept = Math.max(0, Math.min(8, bits - 8 * index));
      const mask = (0xff << (8 - kept)) & 0xff;
      return (byte & mask) === (other[index] & mask);
    });
  // What an address term matches: a test of one address.
  const addressMatcher = (pattern) => {
    const network = /^(.+)\/(\d{1,3})$/.exec(pattern);
    if (network) {
      const base = bytesOf(network[1]);
      const bits = Number(network[2]);
      if (base === null || bits > base.length * 8) {
        return () => false;
      }
      return (address) => {
        const bytes = bytesOf(address);
        return bytes !== null && sameBits(bytes, base, bits);
      };
    }
    if (/[.:]$/.test(pattern) || /^\d{1,3}(\.\d{1,3}){0,2}$/.test(pattern)) {
      const prefix = /[.:]$/.test(pattern) ? pattern : `${pattern}.`;
      return (address) => address.startsWith(prefix);
    }
    const exact = bytesOf(pattern); // fd00::5 is fd00:0::5
    return (address) => {
      if (exact === null) {
        return address === pattern;
      }
      const bytes = bytesOf(address);
      return bytes !== null && sameBits(bytes, exact, exact.length * 8);
    };
  };
  const parseTerm = (term) => {
    const host = /^host:(.+)$/.exec(term);
    const quoted = /^"(.+)"$/.exec(term);
    if (host || quoted) {
      const value = host ? host[1].replace(/^"(.*)"$/, "$1") : quoted[1];
      return { address: addressMatcher(value), value };
    }
    return { address: null, value: term };
  };

  const apply = () => {
    const terms = search.value.toLowerCase().split(/\s+/).filter(Boolean).map(parseTerm);
    const wanted = verdict.value;
    const all = terms.some((term) => term.address === null) ? rowTexts() : null;
    const ends = terms.some((term) => term.address !== null) ? rowAddresses() : null;
    let shown = 0;
    rows.forEach((row, index) => {
      const visible =
        (!wanted || row.classList.contains(wanted)) &&
        (onlyIds === null || onlyIds.has(row.id)) &&
        terms.every((term) =>
          term.address !== null
            ? ends[index].some(term.address)
            : all[index].includes(term.value),
        );
      row.hidden = !visible;
      if (visible) {
        shown += 1;
      }
    });
    const limited = onlyIds !== null ? " (chosen flows)" : "";
    count.textContent =
      shown === rows.length ? `${rows.length} flows` : `${shown} of ${rows.length} flows${limited}`;
  };

  const fragment = () => {
    const params = new URLSearchParams();
    if (search.value) params.set("filter", search.value);
    if (verdict.value) params.set("verdict", verdict.value);
    if (onlyIds !== null) params.set("ids", Array.from(onlyIds, (id) => id.slice(5)).join(","));
    return params.toString();
  };

  const remember = () => {
    try {
      const hash = fragment();
      history.replaceState(null, "", hash ? `#${hash}` : location.pathname + location.search);
    } catch (error) {
      // file:// pages may refuse history changes: the filter still applies
    }
  };

  const fromFragment = () => {
    const params = new URLSearchParams(location.hash.slice(1));
    if (!fragmentKeys.some((key) => params.has(key))) {
      return false;
    }
    search.value = params.get("filter") || "";
    const wanted = params.get("verdict") || "";
    verdict.value = verdicts.has(wanted) ? wanted : "";
    const ids = params.get("ids");
    onlyIds = ids
      ? new Set(ids.split(",").map((id) => `flow-${id.trim()}`))
      : null;
    apply();
    return true;
  };

  const showRow = () => {
    // #flow-12 (a finding's flow): make sure the row is not filtered away
    const target = location.hash.startsWith("#flow-")
      ? document.getElementById(location.hash.slice(1))
      : null;
    if (target !== null && target.hidden) {
      search.value = "";
      verdict.value = "";
      onlyIds = null;
      apply();
      target.scrollIntoView();
    }
  };

  const sortBy = (button) => {
    const header = button.parentElement;
    const column = header.cellIndex;
    const kind = button.dataset.type || "text";
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    for (const other of table.tHead.rows[0].cells) {
      other.removeAttribute("aria-sort");
    }
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const keyOf = (row) => {
      const text = row.cells[column].textContent;
      if (kind === "number") {
        return parseFloat(text) || 0;
      }
      if (kind === "address") {
        const ipv4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+):(\d+)$/.exec(text);
        return ipv4
          ? `4 ${ipv4.slice(1).map((part) => part.padStart(5, "0")).join(".")}`
          : `6 ${text}`;
      }
      return text.toLowerCase();
    };
    const keyed = rows.map((row) => [keyOf(row), row]);
    const direction = ascending ? 1 : -1;
    keyed.sort(([a], [b]) => (a < b ? -direction : a > b ? direction : 0));
    const ordered = document.createDocumentFragment();
    for (const [, row] of keyed) {
      ordered.appendChild(row);
    }
    body.appendChild(ordered);
  };

  table.tHead.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (button !== null) {
      sortBy(button);
    }
  });
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      apply();
      remember();
    }, 120);
  });
  verdict.addEventListener("change", () => {
    apply();
    remember();
  });
  reset.addEventListener("click", () => {
    search.value = "";
    verdict.value = "";
    onlyIds = null;
    apply();
    remember();
  });
  window.addEventListener("hashchange", () => {
    if (fromFragment()) {
      section.scrollIntoView();
    } else {
      showRow();
    }
  });
  // Printing: open every finding's facts, so that the PDF holds them.
  window.addEventListener("beforeprint", () => {
    for (const details of document.querySelectorAll("details")) {
      details.open = true;
    }
  });

  fromFragment();
  showRow();
  document.body.dataset.ready = "1";
})();
