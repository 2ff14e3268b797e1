"""Reading the documentation from tests: the commands it promises."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / 'docs' / 'deploy.md'


def documented_command(shipped: str) -> list[str]:
    """The ``filestorectl`` arguments docs/deploy.md says ``shipped`` is made by.

    The page says "`SHIPPED` is exactly the output of `filestorectl ARGS`"; the
    test runs those ARGS, so the shipped file and the documented command cannot
    drift apart.
    """
    text = ' '.join(DEPLOY.read_text(encoding='utf-8').split())
    found = re.search(
        rf'`{re.escape(shipped)}` is exactly the output of `filestorectl ([^`]+)`', text
    )
    assert found, f'{DEPLOY} does not say which command makes {shipped}'
    return shlex.split(found.group(1))
