"""Just enough of ClickHouse's SQL lexis for the HTTP interface: statement kind, multi-statements, FORMAT.

The HTTP interface needs three facts about a query before the engine sees it:
its first keyword (a read-only user may run SELECT, SHOW, DESCRIBE, EXPLAIN
only), whether it is one statement (the interface refuses more), and, for an
INSERT whose data follows in the body, where its ``FORMAT <name>`` clause ends.
Quoted strings, quoted identifiers and comments are skipped as ClickHouse's
lexer does, so a ``;`` or ``FORMAT`` inside them is never taken for syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
READ_ONLY_KINDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int


def tokens(sql: str) -> list[Token]:
    """Words and punctuation of ``sql``, with strings, quoted names and comments dropped."""
    out: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i) or c == "#":
            i = _line_end(sql, i)
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c in "'\"`":
            i = _quoted_end(sql, i, c)
        else:
            match = _WORD.match(sql, i)
            end = match.end() if match else i + 1
            out.append(Token(sql[i:end], i, end))
            i = end
    return out


def _line_end(sql: str, i: int) -> int:
    end = sql.find("\n", i)
    return len(sql) if end < 0 else end + 1


def _quoted_end(sql: str, i: int, quote: str) -> int:
    j = i + 1
    while j < len(sql):
        if sql[j] == "\\":
            j += 2
        elif sql[j] == quote:
            if sql.startswith(quote * 2, j):  # '' inside '...' is one quote
                j += 2
                continue
            return j + 1
        else:
            j += 1
    return len(sql)


def kind(sql: str) -> str:
    """The statement's first keyword, upper-cased ('' for an empty query); '(' for a parenthesised SELECT."""
    words = tokens(sql)
    return words[0].text.upper() if words else ""


def is_read_only(sql: str) -> bool:
    words = [t.text.upper() for t in tokens(sql)]
    if not words:
        return False
    first = "SELECT" if words[0] == "(" else words[0]
    # SELECT ... INTO OUTFILE writes a file on the server: not a read.
    return first in READ_ONLY_KINDS and not _has_sequence(words, ("INTO", "OUTFILE"))


def _has_sequence(words: list[str], sequence: tuple[str, ...]) -> bool:
    size = len(sequence)
    return any(tuple(words[i:i + size]) == sequence for i in range(len(words) - size + 1))


def statement_count(sql: str) -> int:
    """Statements separated by ';' (a trailing ';' does not start another)."""
    count, pending = 0, False
    for token in tokens(sql):
        if token.text == ";":
            count += pending
            pending = False
        else:
            pending = True
    return count + pending


@dataclass(frozen=True)
class InsertWithData:
    """An INSERT whose rows follow its ``FORMAT`` clause: the statement, the format and where data starts."""

    statement: str
    format: str
    data_start: int


def insert_with_data(sql: str) -> InsertWithData | None:
    """For ``INSERT INTO t [(cols)] [SETTINGS ...] FORMAT Name<ws><data>``: the statement up to the format name,
    and the offset of the data (after one whitespace character, as ClickHouse reads it)."""
    words = tokens(sql[:65536])  # the statement is short: never lex megabytes of inline data
    if not words or words[0].text.upper() != "INSERT":
        return None
    for i, token in enumerate(words[:-1]):
        if token.text.upper() == "FORMAT" and _WORD.fullmatch(words[i + 1].text):
            name = words[i + 1]
            data_start = name.end
            if data_start < len(sql) and sql[data_start] in " \t\r\n":
                data_start += 2 if sql.startswith("\r\n", data_start) else 1
            return InsertWithData(sql[:name.end], name.text, data_start)
        if token.text.upper() in ("SELECT", "VALUES", "WITH"):
            return None  # INSERT ... SELECT / VALUES: the statement carries its own rows
    return None


def output_format(sql: str) -> str | None:
    """The FORMAT a SELECT names at its end, if any (the response's X-ClickHouse-Format)."""
    words = tokens(sql)
    for i in range(len(words) - 2, -1, -1):
        if words[i].text.upper() == "FORMAT" and _WORD.fullmatch(words[i + 1].text):
            return words[i + 1].text
    return None


def is_temporary(sql: str) -> bool:
    words = [t.text.upper() for t in tokens(sql)[:2]]
    return words == ["CREATE", "TEMPORARY"]


def from_infile(statement: str, path: object) -> str:
    """``INSERT INTO t [(cols)] [SETTINGS ...] FORMAT Name`` reading its rows from a file on this host.

    ``FROM INFILE`` must come before SETTINGS and FORMAT, which is where it is put.
    """
    words = tokens(statement)
    cut = next((t.start for t in words if t.text.upper() in ("SETTINGS", "FORMAT")), len(statement))
    quoted = "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{statement[:cut].rstrip()} FROM INFILE {quoted} {statement[cut:]}"
