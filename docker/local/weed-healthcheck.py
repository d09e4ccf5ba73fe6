#!/usr/bin/env python3
"""The stand-in SeaweedFS image's healthcheck: S3 answers on S3_PORT (8333) and, with WEED_PORT_BASE, the master
knows a volume server (until weed mini's volume server has sent its first heartbeat, writes fail)."""

import json
import os
import sys
import urllib.error
import urllib.request


def answers(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as e:  # 403 without credentials: S3 is up
        return bytes(e.read())


try:
    answers(f"http://127.0.0.1:{os.environ.get('S3_PORT', '8333')}/")
    if base := os.environ.get("WEED_PORT_BASE"):
        topology = json.loads(answers(f"http://127.0.0.1:{base}/dir/status"))["Topology"]
        racks = [rack for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or []]
        nodes = [node for rack in racks for node in rack.get("DataNodes") or []]
        if not nodes:
            sys.exit("the master knows no volume server yet")
except (OSError, ValueError, KeyError) as e:
    sys.exit(f"not ready: {e}")
