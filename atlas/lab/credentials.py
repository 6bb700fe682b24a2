"""The lab's own bootstrap secrets: generated once per lab, kept in a 0600 file in its directory.

They exist so the lab can seed OpenBao (a dev server forgets everything when it stops) and create
the NetBox token and switch logins. Atlas itself never reads this file: flows and the CLI get every
credential from OpenBao.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path

_ALNUM = string.ascii_letters + string.digits


def _token(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


@dataclass(frozen=True)
class LabSecrets:
    openbao_root_token: str
    netbox_admin_password: str
    netbox_token_key: str
    netbox_token_secret: str
    netbox_secret_key: str
    netbox_pepper: str
    switch_password: str
    # labs created before images existed have none in their file: they get one when loaded
    aws_secret_key: str = field(default_factory=lambda: _token(40))
    prefect_db_password: str = field(default_factory=lambda: _token(24))
    bmc_password: str = field(default_factory=lambda: _token(20))  # every BMC's admin login

    @property
    def netbox_token(self) -> str:
        return f"nbt_{self.netbox_token_key}.{self.netbox_token_secret}"

    def values(self) -> list[str]:
        return list(asdict(self).values())

    @classmethod
    def generate(cls) -> LabSecrets:
        return cls(
            openbao_root_token=_token(32),
            netbox_admin_password=_token(20),
            netbox_token_key=_token(12),
            netbox_token_secret=_token(40, "0123456789abcdef"),
            netbox_secret_key=_token(60),
            netbox_pepper=_token(60),
            switch_password=_token(20),
        )

    @classmethod
    def load_or_create(cls, lab_dir: Path) -> LabSecrets:
        path = lab_dir / "secrets.json"
        if path.exists():
            stored = json.loads(path.read_text())
            loaded = cls(**stored)
            if set(asdict(loaded)) - set(stored):  # a secret added since: kept from now on
                path.write_text(json.dumps(asdict(loaded), indent=2))
            return loaded
        made = cls.generate()
        lab_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(made), f, indent=2)
        return made
