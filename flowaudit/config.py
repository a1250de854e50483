"""How packets become flows: the settings, with their defaults and where those come from.

Kept apart from ``flows.py`` (which loads the compiled kernels) so that the command line can
show the defaults without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowaudit.errors import UsageError

# Zeek's udp_inactivity_timeout and icmp_inactivity_timeout are 1 min
# (scripts/base/init-bare.zeek); tshark's conversation tables never split on time
# (use idle_timeout=0 to count as tshark does).
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_PAYLOAD_BYTES = 2048


@dataclass(frozen=True)
class FlowConfig:
    """How packets become flows."""

    payload_bytes: int = DEFAULT_PAYLOAD_BYTES  # first payload bytes kept per direction
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT  # seconds; 0 = never split non-TCP flows
    sha256: bool = False  # hash each capture file as it is read (evidence)

    def __post_init__(self) -> None:
        if self.payload_bytes < 0:
            raise UsageError("payload bytes must be 0 or more")
        if self.idle_timeout < 0:
            raise UsageError("the idle timeout must be 0 (never) or more seconds")
