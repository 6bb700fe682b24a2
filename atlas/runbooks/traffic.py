"""Which servers answer a service address, seen from a client: requests over fresh connections, so
equal-cost paths (one per site, one per server) each get their share.

The client runs a constant script; the address is an IPv4 address from NetBox and the port and count
are integers, so nothing else reaches its shell.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from atlas.core.errors import Failed
from atlas.core.model import Credential, Device
from atlas.net.sessions import DeviceUnreachable, ssh_exec

SERVICE_PORT = 8080
_PROBE = """
import json, urllib.request
answers = []
for _ in range({count}):
    try:
        answers.append(json.load(urllib.request.urlopen("http://{address}:{port}/", timeout={timeout}))["host"])
    except Exception as e:
        answers.append("!" + type(e).__name__)
print(json.dumps(answers))
"""


class ProbeFailed(Failed):
    pass


@dataclass
class Answers:
    by_host: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # kind of failure -> how many

    def by_site(self, site_of: dict[str, str]) -> Counter[str]:
        return Counter({site_of.get(h, "?"): n for h, n in self.by_host.items()})

    def __add__(self, other: Answers) -> Answers:
        return Answers(self.by_host + other.by_host, self.errors + other.errors)


def probe(
    client: Device, cred: Credential, address: IPv4Address, count: int = 20, port: int = SERVICE_PORT
) -> Answers:
    script = _PROBE.format(count=int(count), address=IPv4Address(address), port=int(port), timeout=3)
    try:
        output = ssh_exec(client, cred, f"python3 -c '{script}'", timeout=10 + 3 * count)
    except DeviceUnreachable as e:
        raise ProbeFailed(f"probing {address} from {client.name}: {e}") from None
    answers = Answers()
    for answer in json.loads(output):
        if answer.startswith("!"):
            answers.errors[answer[1:]] += 1
        else:
            answers.by_host[answer] += 1
    return answers
