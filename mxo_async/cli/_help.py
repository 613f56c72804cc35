"""Help text that reads cleanly at any width: click's layout, but no word is ever cut.

click wraps with :class:`textwrap.TextWrapper` defaults, which break a word after a hyphen
(``--key-`` / ``attribute``, ``dead-`` / ``letter``) and cut a word longer than the line. Here a
line breaks only at spaces, and after a comma inside a word (a fault spec such as
``429=0.05,503=0.02`` is a list: it breaks between its items, never inside one).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable

import click
from click.formatting import iter_rows, measure_table

__all__ = ["Context", "HelpFormatter", "wrap_text"]

_SPACE = r"[\t\n\x0b\x0c\r ]"


class _Wrapper(textwrap.TextWrapper):
    # TextWrapper splits text into chunks at this pattern (without break_on_hyphens) and puts
    # chunks together again without adding anything: an empty match after a comma is one more
    # place where a line may end.
    wordsep_simple_re = re.compile(rf"({_SPACE}+|(?<=,)(?=[^,\t\n\x0b\x0c\r ]))")


def wrap_text(
    text: str,
    width: int,
    initial_indent: str = "",
    subsequent_indent: str = "",
    preserve_paragraphs: bool = False,
) -> str:
    """:func:`click.wrap_text` without breaking words (``\\b`` paragraphs stay as written)."""
    wrapper = _Wrapper(
        width,
        initial_indent=initial_indent,
        subsequent_indent=subsequent_indent,
        replace_whitespace=False,
        break_on_hyphens=False,
        break_long_words=False,
    )
    text = text.expandtabs()
    if not preserve_paragraphs:
        return wrapper.fill(text)
    paragraphs: list[tuple[int, bool, str]] = []
    lines: list[str] = []
    indent: int | None = None

    def flush() -> None:
        if not lines:
            return
        if lines[0].strip() == "\b":
            paragraphs.append((indent or 0, True, "\n".join(lines[1:])))
        else:
            paragraphs.append((indent or 0, False, " ".join(lines)))
        lines.clear()

    for line in text.splitlines():
        if not line:
            flush()
            indent = None
            continue
        if indent is None:
            stripped = line.lstrip()
            indent = len(line) - len(stripped)
            line = stripped
        lines.append(line)
    flush()

    rendered = []
    for extra, raw, paragraph in paragraphs:
        pad = " " * extra
        if raw:
            rendered.append(
                "\n".join(
                    initial_indent + pad + line if n == 0 else subsequent_indent + pad + line
                    for n, line in enumerate(paragraph.splitlines())
                )
            )
            continue
        wrapper.initial_indent = initial_indent + pad
        wrapper.subsequent_indent = subsequent_indent + pad
        rendered.append(wrapper.fill(paragraph))
        wrapper.initial_indent, wrapper.subsequent_indent = initial_indent, subsequent_indent
    return "\n\n".join(rendered)


class HelpFormatter(click.HelpFormatter):
    """click's formatter with :func:`wrap_text` for the texts and the option descriptions."""

    def write_text(self, text: str) -> None:
        indent = " " * self.current_indent
        self.write(wrap_text(text, self.width, indent, indent, preserve_paragraphs=True))
        self.write("\n")

    def write_dl(
        self, rows: Iterable[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        rows = list(rows)
        widths = measure_table(rows)
        if len(widths) != 2:
            raise TypeError("Expected two columns for definition list")
        first_col = min(widths[0], col_max) + col_spacing
        for first, second in iter_rows(rows, len(widths)):
            self.write(f"{'':>{self.current_indent}}{first}")
            if not second:
                self.write("\n")
                continue
            if len(first) <= first_col - col_spacing:
                self.write(" " * (first_col - len(first)))
            else:
                self.write("\n")
                self.write(" " * (first_col + self.current_indent))
            text_width = max(self.width - first_col - 2, 10)
            lines = wrap_text(second, text_width, preserve_paragraphs=True).splitlines()
            if not lines:
                self.write("\n")
                continue
            self.write(f"{lines[0]}\n")
            for line in lines[1:]:
                self.write(f"{'':>{first_col + self.current_indent}}{line}\n" if line else "\n")


class Context(click.Context):
    """The commands' context: help through :class:`HelpFormatter`."""

    formatter_class = HelpFormatter
