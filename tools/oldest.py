"""Prints pip constraints that pin each of tfvae's dependencies to the lower bound setup.cfg gives it.

    python tools/oldest.py > constraints.txt     # `make test-oldest` does this

Every requirement of `install_requires` written `name>=X,...` becomes `name==X`, so the lower bounds in
setup.cfg are exactly the versions the oldest test run installs (each must be a release that exists).
Requirements without a lower bound are left to pip, except the ones in TRANSITIVE below.
"""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

SETUP_CFG = Path(__file__).resolve().parent.parent / "setup.cfg"
# Dependencies of dependencies that the oldest stack needs pinned. TFDS leaves tensorflow-metadata unpinned, and
# tensorflow-metadata 1.21 (the newest) is generated code for protobuf >= 6.31 while declaring >= 4.25.2; TF 2.16
# to 2.19 require protobuf < 5 or < 6, so with them TFDS fails to import unless tensorflow-metadata < 1.21.
TRANSITIVE = {"tensorflow-metadata": "1.17.1"}


def requirements(setup_cfg: Path = SETUP_CFG) -> list[str]:
    """The install_requires lines of setup.cfg, comments dropped."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    lines = parser["options"]["install_requires"].splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def oldest_pins(lines: list[str]) -> list[str]:
    """`name>=X,<Y` -> `name==X` for each requirement with a lower bound."""
    pins = []
    for line in lines:
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", line)
        name, spec = match.group(1), match.group(2)
        lower = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", spec)
        if lower:
            pins.append(f"{name.split('[')[0]}=={lower.group(1)}")
    return pins


if __name__ == "__main__":
    pins = oldest_pins(requirements()) + [f"{name}=={version}" for name, version in TRANSITIVE.items()]
    sys.stdout.write("".join(f"{pin}\n" for pin in pins))
