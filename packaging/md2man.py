#!/usr/bin/env python3
"""Turn docs/proxlb-opt.1.md into a roff man page (man(7) macros).

Only the small Markdown subset the page uses is understood, so the output stays predictable and needs
no pandoc/ronn on a Proxmox node:

    # name(1) -- one-line description          title line (first line)
    ## SECTION / ### Subsection                 .SH / .SS
    `term` *ARG*  followed by  : definition     .TP (continuation lines indented by two spaces)
    * bullet                                    .IP
    ```fenced code```                           .nf/.fi, indented
    `code` **bold** *italic*                    \\fB \\fB \\fI
    <!-- comment -->                            dropped

Usage: md2man.py SOURCE.md [-o OUT.1]  (the version in the footer is read from proxlb_opt/__init__.py).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*")


def project_version() -> str:
    text = (REPO / "proxlb_opt" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not match:
        raise SystemExit("proxlb_opt/__init__.py: no __version__")
    return match.group(1)


def escape(text: str) -> str:
    """Plain text → roff: backslashes and hyphens (so options copy-paste as ASCII minus signs)."""
    return text.replace("\\", "\\e").replace("-", "\\-")


def inline(text: str) -> str:
    out, pos = [], 0
    for match in INLINE.finditer(text):
        out.append(escape(text[pos:match.start()]))
        code, bold, italic = match.groups()
        if code is not None:
            out.append(rf"\fB{escape(code)}\fR")
        elif bold is not None:
            out.append(rf"\fB{escape(bold)}\fR")
        else:
            out.append(rf"\fI{escape(italic)}\fR")
        pos = match.end()
    out.append(escape(text[pos:]))
    return protect("".join(out))


def protect(line: str) -> str:
    """A text line must not start with a control character."""
    return "\\&" + line if line.startswith((".", "'")) else line


def strip_comments(text: str) -> str:
    return re.sub(r"<!--.*?-->\n?", "", text, flags=re.S)


def convert(markdown: str, version: str) -> str:
    lines = strip_comments(markdown).splitlines()
    title = re.fullmatch(r"# (\S+)\((\d)\) -- (.+)", lines[0])
    if not title:
        raise ValueError("first line must be '# name(N) -- description'")
    name, section, summary = title.groups()
    out = [
        f'.\\" Generated from docs/{name}.{section}.md by packaging/md2man.py; edit the Markdown, then run `make man`.',
        f'.TH "{name.upper()}" "{section}" "" "{name} {version}" "User Commands"',
        ".nh",  # no hyphenation: option and key names stay whole
        ".ad l",
        ".SH NAME",
        f"{escape(name)} \\- {inline(summary)}",
    ]
    i, paragraph = 1, []

    def flush() -> None:
        if paragraph:
            out.append(".PP")
            out.append(inline(" ".join(paragraph)))
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            flush()
            i += 1
        elif line.startswith("### "):
            flush()
            out.append(f'.SS "{line[4:].strip()}"')
            i += 1
        elif line.startswith("## "):
            flush()
            out.append(f".SH {line[3:].strip()}")
            i += 1
        elif line.startswith("```"):
            flush()
            out += [".PP", ".RS 4", ".nf"]
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                out.append(protect(escape(lines[i])))
                i += 1
            out += [".fi", ".RE"]
            i += 1
        elif line.startswith("* "):
            flush()
            item = [line[2:].strip()]
            i += 1
            while i < len(lines) and lines[i].startswith("  "):
                item.append(lines[i].strip())
                i += 1
            out += [".IP \\(bu 2", inline(" ".join(item))]
        elif i + 1 < len(lines) and lines[i + 1].startswith(": "):
            flush()
            term = line.strip()
            body = [lines[i + 1][2:].strip()]
            i += 2
            while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():
                body.append(lines[i].strip())
                i += 1
            out += [".TP", inline(term), inline(" ".join(body))]
        else:
            paragraph.append(line.strip())
            i += 1
    flush()
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    args = parser.parse_args(argv)
    roff = convert(args.source.read_text(encoding="utf-8"), project_version())
    if args.output:
        args.output.write_text(roff, encoding="utf-8")
    else:
        sys.stdout.write(roff)
    return 0


if __name__ == "__main__":
    sys.exit(main())
