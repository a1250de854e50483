"""flowaudit: packet-capture flow auditor for Microsoft Configuration Manager sites."""

__version__ = "0.1.0"
