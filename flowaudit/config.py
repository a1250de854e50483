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
# Bounds of the settings: a payload slot larger than the largest record is never filled, and
# an idle timeout must stay a finite number of nanoseconds in 64 bits.
MAX_PAYLOAD_BYTES = 262144
MAX_IDLE_TIMEOUT = 1e9


@dataclass(frozen=True)
class FlowConfig:
    """How packets become flows."""

    payload_bytes: int = DEFAULT_PAYLOAD_BYTES  # first payload bytes kept per direction
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT  # seconds; 0 = never split non-TCP flows
    sha256: bool = False  # hash each capture file as it is read (evidence)
    # read the whole conversation of the flows an incremental dissector claims
    # (flowaudit.stream): operations and identities; ``analyze`` turns it on
    conversations: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.payload_bytes <= MAX_PAYLOAD_BYTES:
            raise UsageError(f"payload bytes must be from 0 to {MAX_PAYLOAD_BYTES}")
        if not 0 <= self.idle_timeout <= MAX_IDLE_TIMEOUT:  # also refuses nan
            raise UsageError(
                f"the idle timeout must be 0 (never) or up to {MAX_IDLE_TIMEOUT:.0f} seconds"
            )
