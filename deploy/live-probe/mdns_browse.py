"""Browses `_nmos-auth._tcp.local.` over mDNS for SECONDS (default 10) and prints each instance
found as one JSON line: name, port, addresses and TXT."""
import json
import sys
import time

from zeroconf import ServiceBrowser, ServiceListener, Zeroconf

TYPE = "_nmos-auth._tcp.local."


class Listener(ServiceListener):
    def __init__(self):
        self.seen = set()

    def add_service(self, zc, type_, name):
        info = zc.get_service_info(type_, name, timeout=3000)
        if info is None or name in self.seen:
            return
        self.seen.add(name)
        txt = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
        print(json.dumps({"name": name, "port": info.port, "addresses": info.parsed_addresses(), "txt": txt}), flush=True)

    def update_service(self, zc, type_, name):
        self.add_service(zc, type_, name)

    def remove_service(self, zc, type_, name):
        pass


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10
    zc = Zeroconf()
    try:
        ServiceBrowser(zc, TYPE, Listener())
        time.sleep(seconds)
    finally:
        zc.close()


if __name__ == "__main__":
    main()
