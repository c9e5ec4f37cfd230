"""Read an operator's commands: ``#word argument`` lines at the top or the bottom of the new text."""

from __future__ import annotations


def split_commands(text: str) -> tuple[list[tuple[str, str]], str]:
    """The ``#command argument`` lines at the top and at the bottom of ``text``, and the text between them.

    Operators write commands above their answer or under it (``#close`` as the last line); a ``#`` inside the
    text is text.
    """
    lines = text.split("\n")
    commands: list[tuple[str, str]] = []
    start = 0
    while start < len(lines) and ((top := _command(lines[start])) or not lines[start].strip()):
        commands += [top] if top else []
        start += 1
    end = len(lines)
    bottom: list[tuple[str, str]] = []
    while end > start and ((last := _command(lines[end - 1])) or not lines[end - 1].strip()):
        bottom[:0] = [last] if last else []
        end -= 1
    return commands + bottom, "\n".join(lines[start:end]).strip("\n")


def _command(line: str) -> tuple[str, str] | None:
    """``("#close", "")`` for a line that is a command, None for text."""
    line = line.strip()
    if not line.startswith("#") or len(line) < 2 or not line[1].isalpha():
        return None
    word, _, argument = line.partition(" ")
    return word.lower(), argument.strip()
