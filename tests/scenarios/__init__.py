"""Scenario captures with real protocol bytes, and what flowaudit must make of every flow.

``build.py`` lays each scenario's conversations on the wire (bytes from ``payloads.py`` and
``tls_bytes.py``) and writes the capture with its ``site.yaml``; ``<name>.yaml`` beside it
lists every flow of that capture with what the audit must say about it:

* the flow: ``client``, ``client_port``, ``server``, ``server_port``, ``proto`` (the client is
  the side that sent the first packet: the SYN for TCP, the first datagram for UDP);
* ``service``, ``verdict`` (expected | unexpected | unknown), ``plaintext``, ``client_role``
  and ``server_role`` (the role each end acted in, or null), ``matrix_section`` and
  ``matrix_row`` (the ports page's section title, arrows written ``-->``/``<-->``, and the
  row's description; null unless the verdict is expected) and ``findings`` (rule ids);
* ``tshark``: what Wireshark must recognise in the flow, the independent check that the bytes
  are the real protocol: ``protocols`` (all in ``frame.protocols`` of some packet of the flow),
  optional ``decode_as`` (tshark ``-d`` arguments, for a protocol off its port) and ``match``
  (each a set of ``field: value`` that one packet of the flow must show together).

Semantics the expectations follow (the reasons for individual flows are YAML comments):

* payload beats port; a service off its documented port is ``non-standard-port``, and when the
  pair may use the service only on other ports the flow is unexpected;
* when several rows allow a flow, the first in the page's order is named;
* traffic to a multicast group or a broadcast address (the limited broadcast, or a directed
  one such as ``10.10.1.255``) is judged by its sender's role alone (``server_role`` null);
* a host outside every role is ``internet`` when its address is public, else it has no role and
  the verdict is ``unknown`` (no ``unexpected-flow`` finding: nothing can judge it);
* ``wrong-direction``: the pair is allowed, but the other side started the flow (or the site
  file's ``site-server-initiates`` withdraws the site system's own direction, ports page note 5).
"""
