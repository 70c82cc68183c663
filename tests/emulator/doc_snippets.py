"""
The runnable examples of the WhatsInfinity API doc, pulled out of ``docs/whatsinfinity-api.txt``.

The doc was flattened to one line per snippet, so line breaks are put back where a statement or a
comment must end; the code itself is left as it is, except for the base URL.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "whatsinfinity-api.txt"
DOC_BASE_URL = "http://api.whatsinfinity.com"

LANGUAGES = {
    "cURL": "curl",
    "Python (requests)": "python",
    "JavaScript (fetch)": "javascript",
    "JavaScript (Node or Browser)": "javascript",
    "PHP (cURL)": "php",
    "JSON": "json",
    "JSON (example response)": "json",
    "Success": "json",
    "Error": "json",
}
SECTIONS = (
    "Example header",
    "401 Unauthorized",
    "Create Session",
    "Get QR Code",
    "Pairing Code",
    "Check Session",
    "All Sessions",
    "Restart Session",
    "Delete Session",
    "Rotate API Key",
    "Send Text Message",
    "Send Media (Image / Video / PDF / Audio)",
    "429 example",
    "Dry Run Mode",
    "Response Format",
    "Full working example (JavaScript)",
)


@dataclass(frozen=True)
class Snippet:
    """One example from the doc: its section, language and code as printed."""

    section: str
    language: str
    code: str
    index: int

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-")
        return f"{slug}-{self.language}-{self.index}"


def snippets(language: str | None = None) -> list[Snippet]:
    """Return the doc's examples in document order, optionally of one language."""
    found: list[Snippet] = []
    section = ""
    lines = DOC.read_text().splitlines()
    for number, line in enumerate(lines):
        if line in SECTIONS:
            section = line
        elif line in LANGUAGES and number + 1 < len(lines):
            found.append(Snippet(section, LANGUAGES[line], lines[number + 1], number + 1))
    return [s for s in found if language in (None, s.language)]


def with_base_url(code: str, base_url: str) -> str:
    """Swap the doc's base URL for the emulator's: the only change made to an example."""
    return code.replace(DOC_BASE_URL, base_url)


def curl_argv(code: str) -> list[str]:
    """Return a cURL example's arguments; ``\\`` line continuations were flattened to `` \\ ``."""
    return shlex.split(code.replace(" \\ ", " "))


def python_source(code: str) -> str:
    """Put back the line breaks a flattened Python example needs: after comments and statements."""
    code = _end_comments(code, "#", re.compile(r"#[^\"']*"))
    out: list[str] = []
    depth = 0
    quote = ""
    for i, ch in enumerate(code):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == " " and depth == 0 and re.match(r" (import |print\(|[A-Za-z_]\w* = )", code[i:]):
            out.append("\n")
            continue
        out.append(ch)
    return "".join(out)


def javascript_source(code: str) -> str:
    """End the flattened ``//`` comments of a JavaScript example where the next code starts."""
    return _end_comments(
        code,
        "//",
        re.compile(r"//[^\"'`{}()]*?(?=\s(?:return|async function|const|let|await|console\.)\b|\s*[}\"'`])"),
    )


def _end_comments(code: str, marker: str, comment: re.Pattern[str]) -> str:
    """Replace each comment outside string literals by a line break; ``comment`` says where it ends."""
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(code):
        ch = code[i]
        if quote:
            quote = "" if ch == quote and code[i - 1] != "\\" else quote
        elif ch in "\"'`":
            quote = ch
        elif code.startswith(marker, i):
            match = comment.match(code, i)
            if match:
                out.append("\n")
                i = match.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def doc_json(section: str, index: int = 0) -> dict[str, object]:
    """Return a JSON example of a section, with the doc's ``....`` ellipses left in strings."""
    examples = [s for s in snippets("json") if s.section == section]
    loaded: dict[str, object] = json.loads(examples[index].code)
    return loaded
