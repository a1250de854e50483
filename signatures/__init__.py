"""flowaudit's signature tables (YAML), installed as the package ``flowaudit.tables``.

The tables are data, not code (DESIGN.md, principle 3): ``services.yaml`` (ports and payload
protocols to services), ``http_endpoints.yaml`` (ConfigMgr URL paths), ``matrix.yaml`` (the
expected communications, one rule per row of Microsoft's ports page) and ``findings.yaml``
(rule ids, severities, references). ``flowaudit.tables.load`` reads them from the installed
package, never from the working directory.
"""
