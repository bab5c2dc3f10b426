"""IIS URL Rewrite rules as the configuration holds them: typed, frozen, located, compiled once.

A site folder's web.config `<rewrite><rules>` (and the same rules in corral.toml's
`[[rewrite]]`, see `corral.config.rewriteread`) become `RewriteRule` values: a match `Pattern`
on the URL path (relative to the rule's folder, without its leading slash), `Condition`s, an
`Action` and `stop_processing`. Inputs and substitutions are `Template`s: literal text,
`{R:n}`/`{C:n}` back-references, server variables (`{HTTP_HOST}`...) and the functions
`{ToLower:...}`, `{UrlEncode:...}`, `{UrlDecode:...}`. Applying them is `corral.rewrite`'s.

Patterns (`patternSyntax`):

- ``ECMAScript`` (IIS's default): translated to Python `re` by `translate_ecmascript`, which
  refuses (`PatternError`) what it cannot translate faithfully; `.` does not match line
  breaks, `$` is the end of the input only, `\\d`, `\\w`, `\\s` and case folding are ASCII's.
  Searched, not anchored (a rule's pattern matches anywhere unless it says `^`/`$`).
- ``Wildcard``: `*` matches anything (and captures), `?` one character; the whole input must
  match.
- ``ExactMatch``: the whole input equals the pattern.

Nothing here reads files or the clock.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Literal

from corral.config.model import Location

Syntax = Literal["ECMAScript", "Wildcard", "ExactMatch"]
SYNTAXES: tuple[Syntax, ...] = ("ECMAScript", "Wildcard", "ExactMatch")

MatchType = Literal["Pattern", "IsFile", "IsDirectory"]
MATCH_TYPES: tuple[MatchType, ...] = ("Pattern", "IsFile", "IsDirectory")

ActionType = Literal["Rewrite", "Redirect", "CustomResponse", "AbortRequest", "None"]
ACTION_TYPES: tuple[ActionType, ...] = (
    "Rewrite",
    "Redirect",
    "CustomResponse",
    "AbortRequest",
    "None",
)

#: `redirectType` -> status. IIS's names, and (Corral's extension) the codes themselves; 308
#: has no IIS name.
REDIRECT_TYPES = {
    "permanent": 301,
    "found": 302,
    "seeother": 303,
    "temporary": 307,
    "301": 301,
    "302": 302,
    "303": 303,
    "307": 307,
    "308": 308,
}

#: Server variables a template may read, besides any request field as `HTTP_NAME`.
VARIABLES = frozenset(
    {
        "HTTPS",
        "QUERY_STRING",
        "REQUEST_URI",
        "UNENCODED_URL",
        "URL",
        "PATH_INFO",
        "REQUEST_FILENAME",
        "REQUEST_METHOD",
        "REMOTE_ADDR",
        "SERVER_NAME",
        "SERVER_PORT",
    }
)
FUNCTIONS = ("ToLower", "UrlEncode", "UrlDecode")


class PatternError(ValueError):
    """A pattern or template that cannot be used (the message says why)."""


# -- patterns ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled `url` of `<match>` or `pattern` of a condition."""

    text: str
    syntax: Syntax
    ignore_case: bool
    #: Compiled for ECMAScript and Wildcard; None for ExactMatch.
    regex: re.Pattern[str] | None

    def captures(self, value: str) -> tuple[str, ...] | None:
        """`(whole match, group 1, ...)`, or None when `value` does not match. Groups that did
        not take part are empty strings, as IIS's back-references are."""
        regex = self.regex
        if regex is None:
            same = value.lower() == self.text.lower() if self.ignore_case else value == self.text
            return (value,) if same else None
        found = regex.search(value) if self.syntax == "ECMAScript" else regex.fullmatch(value)
        if found is None:
            return None
        return (found.group(0), *(group or "" for group in found.groups()))

    @property
    def groups(self) -> int:
        return 0 if self.regex is None else self.regex.groups

    def matches_everything(self) -> bool:
        """True when every input matches (`.*`, `^`, Wildcard `*`...): a rule after one that
        takes every URL can never match. Decided by the text, soundly (`^(.*)$` does not
        match a path with an encoded line break, so it is not one of these)."""
        if self.syntax == "Wildcard":
            return self.text != "" and set(self.text) == {"*"}
        if self.syntax == "ECMAScript":
            return self.text in _EVERYTHING
        return False


_EVERYTHING = frozenset({"", ".*", "^", "^.*", "(.*)", "^(.*)", ".*$", "(.*)$", "^.*?", ".*?"})


def compile_pattern(text: str, syntax: Syntax, ignore_case: bool) -> Pattern:
    """Raises `PatternError` for a pattern Corral cannot run as IIS would."""
    if syntax == "ExactMatch":
        return Pattern(text, syntax, ignore_case, None)
    flags = re.IGNORECASE if ignore_case else 0
    if syntax == "Wildcard":
        body = "".join(
            "(.*)" if char == "*" else "." if char == "?" else re.escape(char) for char in text
        )
        return Pattern(text, syntax, ignore_case, re.compile(body, flags | re.DOTALL))
    translated = translate_ecmascript(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            regex = re.compile(translated, flags | re.ASCII)
    except (re.error, FutureWarning, DeprecationWarning) as error:
        raise PatternError(f"invalid regular expression {text!r}: {error}") from None
    return Pattern(text, syntax, ignore_case, regex)


#: Escapes with the same meaning in ECMAScript and Python `re` (ASCII mode).
_SAME_ESCAPES = frozenset("dDwWsSbBnrtfv")
#: `.` of ECMAScript: anything but a line terminator.
_DOT = "[^\\n\\r\\u2028\\u2029]"
_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
#: A quantifier ECMAScript reads as one; any other `{` is a literal brace.
_QUANTIFIER = re.compile(r"\{\d+(,\d*)?\}")


def translate_ecmascript(text: str) -> str:
    """An ECMAScript regular expression (IIS's `patternSyntax="ECMAScript"`) as Python `re`.

    Translated: `.` (no line terminators), `$` (end of input only), `(?<name>...)` and
    `\\k<name>`, `\\cX`, `\\xHH`, `\\uHHHH`, a `{` that starts no quantifier (`a{,3}` is
    literal in ECMAScript). Refused (`PatternError`): `\\u{...}` and `\\p{...}`
    (the `u` flag's), escapes that mean something else in Python or nothing in ECMAScript
    (`\\A`, `\\Z`, `\\z`, `\\G`, `\\Q`...), group syntax ECMAScript does not have (`(?P`,
    `(?i)`, `(?#`, `(?>`...) and an empty class `[]`/`[^]`. What Python's compiler then
    refuses (a lookbehind of variable width...) is refused by `compile_pattern`.
    """
    out: list[str] = []
    index = 0
    size = len(text)
    in_class = False
    while index < size:
        char = text[index]
        if char == "\\":
            escaped, index = _escape(text, index, in_class)
            out.append(escaped)
            continue
        if in_class:
            if char == "]":
                in_class = False
                out.append("]")
            elif char in "[&~|":
                out.append("\\" + char)  # literal in ECMAScript; Python warns of set syntax
            else:
                out.append(char)
            index += 1
            continue
        if char == "[":
            start = index + 1
            negated = text.startswith("^", start)
            if text.startswith("]", start + negated):
                raise PatternError(
                    f"an empty character class ({text[index : start + negated + 1]})"
                )
            in_class = True
            out.append("[^" if negated else "[")
            index = start + negated
            continue
        if char == ".":
            out.append(_DOT)
        elif char == "$":
            out.append("\\Z")
        elif char == "(" and text.startswith("(?", index):
            group, index = _group(text, index)
            out.append(group)
            continue
        elif char == "{":
            quantifier = _QUANTIFIER.match(text, index)
            if quantifier is None:  # a literal brace (Python reads `{,n}` as a quantifier)
                out.append("\\{")
            else:
                out.append(quantifier.group(0))
                index = quantifier.end()
                continue
        else:
            out.append(char)
        index += 1
    if in_class:
        raise PatternError("a character class is not closed (missing ])")
    return "".join(out)


def _group(text: str, index: int) -> tuple[str, int]:
    """`(?` at `index`: the Python spelling and the position after its opening."""
    rest = text[index + 2 : index + 4]
    if rest[:1] in (":", "=", "!"):
        return text[index : index + 3], index + 3
    if rest in ("<=", "<!"):
        return text[index : index + 4], index + 4
    if rest[:1] == "<":
        name = _NAME.match(text, index + 3)
        if name is None or not text.startswith(">", name.end()):
            raise PatternError(f"a malformed group name at {text[index : index + 12]!r}")
        return f"(?P<{name.group(0)}>", name.end() + 1
    raise PatternError(f"{text[index : index + 4]!r}: group syntax ECMAScript does not have")


def _escape(text: str, index: int, in_class: bool) -> tuple[str, int]:
    """The escape at `index` (a backslash) in Python's spelling, and the position after it."""
    if index + 1 >= len(text):
        raise PatternError("the pattern ends with a lone backslash")
    code = text[index + 1]
    after = index + 2
    if code in _SAME_ESCAPES:
        return "\\" + code, after
    if code.isdigit():
        end = after
        while end < len(text) and text[end].isdigit():
            end += 1
        if code == "0" and end == after:
            return "\\x00", after
        if in_class:
            raise PatternError(f"\\{text[index + 1 : end]} in a character class")
        return "\\" + text[index + 1 : end], end
    if code == "x":
        digits = text[after : after + 2]
        if len(digits) == 2 and all(c in "0123456789abcdefABCDEF" for c in digits):
            return "\\x" + digits, after + 2
        raise PatternError(f"\\x needs two hex digits ({text[index : index + 4]!r})")
    if code == "u":
        digits = text[after : after + 4]
        if len(digits) == 4 and all(c in "0123456789abcdefABCDEF" for c in digits):
            return "\\u" + digits, after + 4
        raise PatternError(f"\\u needs four hex digits ({text[index : index + 6]!r})")
    if code == "c":
        letter = text[after : after + 1]
        if letter.isascii() and letter.isalpha():
            return "\\x%02x" % (ord(letter) % 32), after + 1
        raise PatternError("\\c needs a letter")
    if code == "k" and not in_class:
        name = _NAME.match(text, after + 1) if text.startswith("<", after) else None
        if name is None or not text.startswith(">", name.end()):
            raise PatternError("\\k needs a group name: \\k<name>")
        return f"(?P={name.group(0)})", name.end() + 1
    if code.isascii() and code.isalnum():
        raise PatternError(f"\\{code}: an escape ECMAScript and Python read differently")
    return "\\" + code, after


# -- templates --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capture:
    """`{R:n}` (`rule`) or `{C:n}` (the last matched condition's)."""

    rule: bool
    index: int


@dataclass(frozen=True, slots=True)
class Variable:
    """A server variable: `HTTPS`, `HTTP_HOST`..."""

    name: str


@dataclass(frozen=True, slots=True)
class Function:
    name: str  # one of FUNCTIONS
    argument: Template


Piece = str | Capture | Variable | Function


@dataclass(frozen=True, slots=True)
class Template:
    """An input or substitution as written, parsed into pieces."""

    text: str
    pieces: tuple[Piece, ...]

    def uses(self, kind: type[Capture | Variable | Function]) -> list[Piece]:
        found: list[Piece] = []
        for piece in self.pieces:
            if isinstance(piece, kind):
                found.append(piece)
            if isinstance(piece, Function):
                found += piece.argument.uses(kind)
        return found


_CAPTURE = re.compile(r"([RCrc]):(\d)")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_template(text: str) -> Template:
    """Raises `PatternError` for an unknown variable or function, a rewrite map or an
    unbalanced brace."""
    pieces, end = _pieces(text, 0, nested=False)
    assert end == len(text)
    return Template(text, tuple(pieces))


def _pieces(text: str, index: int, *, nested: bool) -> tuple[list[Piece], int]:
    pieces: list[Piece] = []
    literal: list[str] = []
    size = len(text)
    while index < size:
        char = text[index]
        if char == "}" and nested:
            break
        if char != "{":
            literal.append(char)
            index += 1
            continue
        if literal:
            pieces.append("".join(literal))
            literal = []
        piece, index = _reference(text, index)
        pieces.append(piece)
    else:
        if nested:
            raise PatternError(f"{text!r}: a {{ is not closed")
    if literal:
        pieces.append("".join(literal))
    return pieces, index


def _reference(text: str, index: int) -> tuple[Piece, int]:
    """The `{...}` at `index`, and the position after its `}`."""
    inner = index + 1
    capture = _CAPTURE.match(text, inner)
    if capture is not None and text.startswith("}", capture.end()):
        return Capture(capture.group(1) in "Rr", int(capture.group(2))), capture.end() + 1
    name = _VARIABLE.match(text, inner)
    if name is None:
        raise PatternError(f"{text!r}: a {{ that starts no variable, back-reference or function")
    word = name.group(0)
    end = name.end()
    if text.startswith("}", end):
        upper = word.upper()
        if upper in VARIABLES or (upper.startswith("HTTP_") and len(upper) > 5):
            return Variable(upper), end + 1
        raise PatternError(f"{{{word}}}: a server variable Corral does not provide")
    if text.startswith(":", end):
        function = next((f for f in FUNCTIONS if f.lower() == word.lower()), None)
        if function is None:
            raise PatternError(
                f"{{{word}:...}}: rewrite maps and functions other than "
                f"{', '.join(FUNCTIONS)} are not supported"
            )
        pieces, close = _pieces(text, end + 1, nested=True)
        argument = Template(text[end + 1 : close], tuple(pieces))
        return Function(function, argument), close + 1
    raise PatternError(f"{text!r}: a {{ is not closed")


# -- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    input: Template
    match_type: MatchType
    #: Pattern conditions only.
    pattern: Pattern | None
    negate: bool
    location: Location


@dataclass(frozen=True, slots=True)
class Action:
    type: ActionType
    #: Rewrite and Redirect: the substitution URL.
    url: Template | None = None
    append_query_string: bool = True
    #: Redirect: 301, 302, 303, 307 or 308; CustomResponse: its status code.
    status: int = 0
    #: CustomResponse: the reason phrase and the page's one-line description.
    reason: str = ""
    description: Template | None = None


@dataclass(frozen=True, slots=True)
class RewriteRule:
    name: str
    #: The folder (relative to the mount, "" for its root) whose URLs the rule sees, relative
    #: to it: the folder of the web.config (or `<location path>`) that declares it.
    folder: str
    match: Pattern
    negate: bool
    conditions: tuple[Condition, ...]
    #: `logicalGrouping="MatchAny"` (else MatchAll).
    match_any: bool
    action: Action
    stop_processing: bool
    location: Location

    @property
    def ends(self) -> bool:
        """After this rule's action (when it fires) no later rule is evaluated."""
        return self.stop_processing or self.action.type in (
            "Redirect",
            "CustomResponse",
            "AbortRequest",
        )

    def takes_every_url(self) -> bool:
        """It fires for every URL under its folder and ends evaluation."""
        return (
            self.ends
            and not self.conditions
            and not self.negate
            and self.match.matches_everything()
        )


@dataclass(frozen=True, slots=True)
class RuleOp:
    """One child of `<rules>`: `add` (a `<rule>`), `remove` (by name) or `clear`."""

    action: Literal["add", "remove", "clear"]
    name: str
    location: Location
    rule: RewriteRule | None = None


@dataclass(frozen=True, slots=True)
class RewriteScope:
    """The rules in effect for URLs at and below `folder` of a mount (the folder's own after
    those it inherits, in evaluation order)."""

    folder: str
    rules: tuple[RewriteRule, ...]
