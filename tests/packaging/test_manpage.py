"""docs/proxlb-opt.1.md: covers the current CLI; docs/proxlb-opt.1 is its up-to-date roff rendering."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess

import pytest
from typer.main import get_command

from proxlb_opt import errors
from proxlb_opt.cli import app
from tests.packaging.conftest import REPO

MARKDOWN = REPO / "docs" / "proxlb-opt.1.md"
ROFF = REPO / "docs" / "proxlb-opt.1"


def _md2man():
    spec = importlib.util.spec_from_file_location("md2man", REPO / "packaging" / "md2man.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sections(text: str) -> dict[str, str]:
    """### command → its text, up to the next heading."""
    parts = re.split(r"^###? (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_roff_is_generated_from_the_markdown():
    md2man = _md2man()
    expected = md2man.convert(MARKDOWN.read_text(encoding="utf-8"), md2man.project_version())
    assert ROFF.read_text(encoding="utf-8") == expected, "docs/proxlb-opt.1 is stale: run `make man`"


#: Options every command takes, described once in their own section.
COMMON = {"--help", "-h", "--version"}


def test_every_command_and_option_is_documented():
    sections = _sections(MARKDOWN.read_text(encoding="utf-8"))
    for name, command in get_command(app).commands.items():
        assert name in sections, f"man page: no section for `{name}`"
        for param in command.params:
            for opt in param.opts + param.secondary_opts:
                if opt.startswith("-") and opt not in COMMON:
                    assert f"`{opt}`" in sections[name], f"man page: `{name}` lacks `{opt}`"
    for opt in COMMON:
        assert f"`{opt}`" in sections["COMMON OPTIONS"], f"man page: COMMON OPTIONS lacks `{opt}`"


def test_proxlb_command_line_is_documented():
    """The options without a command (ProxLB's, and shell completion) have their own section."""
    section = _sections(MARKDOWN.read_text(encoding="utf-8"))["PROXLB'S COMMAND LINE"]
    for param in get_command(app).params:
        for opt in param.opts + param.secondary_opts:
            if opt not in ("--help", "-h"):
                assert f"`{opt}`" in section, f"man page: PROXLB'S COMMAND LINE lacks `{opt}`"


def test_exit_codes_match_the_error_tree():
    status = MARKDOWN.read_text(encoding="utf-8").split("## EXIT STATUS", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^`(\d+)`$", status, flags=re.M)}
    codes = {cls.exit_code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.ProxlbOptError)}
    assert codes <= documented, f"undocumented exit codes: {sorted(codes - documented)}"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_roff_renders_without_warnings():
    proc = subprocess.run(["groff", "-man", "-ww", "-z", str(ROFF)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_inline_markup_and_escapes():
    md2man = _md2man()
    assert md2man.inline("`--max-migrations` *N*") == r"\fB\-\-max\-migrations\fR \fIN\fR"
    assert md2man.inline(".dot starts") == r"\&.dot starts"
    assert md2man.escape("a\\b") == r"a\eb"
