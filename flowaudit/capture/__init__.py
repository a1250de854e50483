"""Reading captures: pcap / pcapng / gzip bytes in, ``PacketBatch`` columns out.

``source`` opens a file and decides its kind by magic bytes, ``walk`` finds the records,
``decode`` decodes link, network and transport headers, ``reader`` drives them over one file
in bounded chunks; ``pyshark_engine`` fills the same batches from tshark's dissection.
"""

from flowaudit.capture.batch import PacketBatch
from flowaudit.capture.reader import CaptureInfo, CaptureReader

__all__ = ["CaptureInfo", "CaptureReader", "PacketBatch"]
