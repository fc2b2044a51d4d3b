"""The grammars of DynamoDB's expressions (lark, LALR) and their raw syntax trees, parsed once per text.

One tokenizer serves every grammar, so a syntax error can be reported as DynamoDB does: the offending token
and the source from the token before it to the token after it (``token: "-", near: "a-b"``; ``"<EOF>"`` at
the end). Keywords are case-insensitive; function names are not.

The raw trees keep placeholders unresolved (``#n`` names, ``:v`` values), so the cache is keyed by the text
alone; the checks that need no placeholder (checks.py) are made once, when the text is parsed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import Lexer

from .checks import Checks
from .errors import ValidationException

MAX_EXPRESSION_BYTES = 4096

_TOKEN = re.compile(
    r"(?P<WS>[ \t\r\n]+)|(?P<ATTR_NAME>#[A-Za-z0-9_]+)|(?P<ATTR_VALUE>:[A-Za-z0-9_]+)|(?P<NAME>[A-Za-z][A-Za-z0-9_]*)"
    r"|(?P<INT>0|[1-9][0-9]*)|(?P<COMP><>|<=|>=|=|<|>)|(?P<PUNCT>[()\[\],.+\-])|(?P<ILLEGAL>.)",
    re.DOTALL,
)
_PUNCT = {"(": "_LPAR", ")": "_RPAR", "[": "_LSQB", "]": "_RSQB", ",": "_COMMA", ".": "_DOT", "+": "PLUS", "-": "MINUS"}
# Keywords of every expression language alike: a bare attribute name spelt like one is a syntax error.
KEYWORDS = frozenset({"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE"})


def tokenize(text: str, keywords: frozenset[str]) -> list[Token]:
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        value = match.group()
        if kind == "WS":
            continue
        if kind == "PUNCT":
            kind = _PUNCT[value]
        elif kind == "NAME" and value.upper() in keywords:
            kind = "_" + value.upper()
        assert kind is not None
        tokens.append(Token(kind, value, start_pos=match.start(), end_pos=match.end()))
    return tokens


def _lexer(keywords: frozenset[str]) -> type[Lexer]:
    class _Tokens(Lexer):
        def __init__(self, lexer_conf: Any) -> None:
            pass

        def lex(self, data: Any, *_: Any) -> Iterator[Token]:  # lark's custom-lexer frontend passes the text
            yield from tokenize(str(data), keywords)

    return _Tokens


_COMMON = r"""
%declare ATTR_NAME ATTR_VALUE NAME INT COMP PLUS MINUS ILLEGAL
%declare _LPAR _RPAR _LSQB _RSQB _COMMA _DOT
path: element (_DOT element | _LSQB INT _RSQB)*
?element: NAME -> name
        | ATTR_NAME -> placeholder
"""

CONDITION_GRAMMAR = (
    r"""
%declare _AND _OR _NOT _BETWEEN _IN _SET _REMOVE _ADD _DELETE
start: or_
?or_: and_
    | or_ _OR and_ -> disj
?and_: not_
    | and_ _AND not_ -> conj
?not_: primary
    | _NOT not_ -> neg
?primary: operand COMP operand -> comparison
    | operand _BETWEEN operand _AND operand -> between
    | operand _IN _LPAR operand (_COMMA operand)* _RPAR -> in_
    | call
    | _LPAR or_ _RPAR -> paren
call: NAME _LPAR operand (_COMMA operand)* _RPAR
?operand: path
    | ATTR_VALUE -> value
    | call
    | _LPAR operand_inner _RPAR -> oparen
?operand_inner: path
    | ATTR_VALUE -> value
    | _LPAR operand_inner _RPAR -> oparen
"""
    + _COMMON
)

UPDATE_GRAMMAR = (
    r"""
%declare _SET _REMOVE _ADD _DELETE _AND _OR _NOT _BETWEEN _IN
start: clause+
?clause: _SET set_action (_COMMA set_action)* -> set_clause
    | _REMOVE path (_COMMA path)* -> remove_clause
    | _ADD path ATTR_VALUE (_COMMA path ATTR_VALUE)* -> add_clause
    | _DELETE path ATTR_VALUE (_COMMA path ATTR_VALUE)* -> delete_clause
set_action: path COMP set_value
?set_value: operand
    | arithmetic
    | _LPAR arithmetic _RPAR
?arithmetic: operand PLUS operand -> plus
    | operand MINUS operand -> minus
call: NAME _LPAR operand (_COMMA operand)* _RPAR
?operand: path
    | ATTR_VALUE -> value
    | call
    | _LPAR operand _RPAR -> oparen
"""
    + _COMMON
)

PROJECTION_GRAMMAR = (
    r"""
%declare _SET _REMOVE _ADD _DELETE _AND _OR _NOT _BETWEEN _IN
start: path (_COMMA path)*
"""
    + _COMMON
)


# Raw trees. A raw path is a tuple of str (a name, or a "#placeholder") and int (a list index).
RawPath = tuple[str | int, ...]


@dataclass(frozen=True)
class RawExpression:
    """What a text parses to: its tree, and the placeholders it uses (in order of appearance)."""

    tree: Any
    names: tuple[str, ...]
    values: tuple[str, ...]


class _Build(Transformer[Token, Any]):
    """The lark tree to tuples: ("path", RawPath), ("value", ":v"), ("call", name, args, token),
    ("cmp", op, a, b), ("between", a, lo, hi), ("in", a, (b, ...)), ("and"|"or", a, b), ("not", a),
    ("paren", c), ("oparen", operand); update clauses ("SET", ((path, value), ...)) and so on."""

    def path(self, children: list[Any]) -> tuple[str, RawPath]:
        parts: list[str | int] = []
        for child in children:
            if isinstance(child, Token) and child.type == "INT":
                parts.append(int(child))
            else:
                parts.append(child)
        return ("path", tuple(parts))

    def name(self, children: list[Token]) -> str:
        return str(children[0])

    def placeholder(self, children: list[Token]) -> str:
        return str(children[0])

    def value(self, children: list[Token]) -> tuple[str, str]:
        return ("value", str(children[0]))

    def call(self, children: list[Any]) -> tuple[Any, ...]:
        return ("call", str(children[0]), tuple(children[1:]))

    def oparen(self, children: list[Any]) -> tuple[Any, ...]:
        return ("oparen", children[0])

    def comparison(self, children: list[Any]) -> tuple[Any, ...]:
        return ("cmp", str(children[1]), children[0], children[2])

    def between(self, children: list[Any]) -> tuple[Any, ...]:
        return ("between", children[0], children[1], children[2])

    def in_(self, children: list[Any]) -> tuple[Any, ...]:
        return ("in", children[0], tuple(children[1:]))

    def disj(self, children: list[Any]) -> tuple[Any, ...]:
        return ("or", children[0], children[1])

    def conj(self, children: list[Any]) -> tuple[Any, ...]:
        return ("and", children[0], children[1])

    def neg(self, children: list[Any]) -> tuple[Any, ...]:
        return ("not", children[0])

    def paren(self, children: list[Any]) -> tuple[Any, ...]:
        return ("paren", children[0])

    def start(self, children: list[Any]) -> Any:
        return children

    def set_action(self, children: list[Any]) -> tuple[Any, ...]:
        if str(children[1]) != "=":
            raise _Syntax(children[1])
        return (children[0], children[2])

    def plus(self, children: list[Any]) -> tuple[Any, ...]:
        return ("+", children[0], children[2])

    def minus(self, children: list[Any]) -> tuple[Any, ...]:
        return ("-", children[0], children[2])

    def set_clause(self, children: list[Any]) -> tuple[Any, ...]:
        return ("SET", tuple(children))

    def remove_clause(self, children: list[Any]) -> tuple[Any, ...]:
        return ("REMOVE", tuple(children))

    def add_clause(self, children: list[Any]) -> tuple[Any, ...]:
        return ("ADD", tuple((children[i], ("value", str(children[i + 1]))) for i in range(0, len(children), 2)))

    def delete_clause(self, children: list[Any]) -> tuple[Any, ...]:
        return ("DELETE", tuple((children[i], ("value", str(children[i + 1]))) for i in range(0, len(children), 2)))


class _Syntax(Exception):
    def __init__(self, token: Token) -> None:
        self.token = token


_PARSERS = {
    "condition": Lark(CONDITION_GRAMMAR, parser="lalr", lexer=_lexer(KEYWORDS)),
    "update": Lark(UPDATE_GRAMMAR, parser="lalr", lexer=_lexer(KEYWORDS)),
    "projection": Lark(PROJECTION_GRAMMAR, parser="lalr", lexer=_lexer(KEYWORDS)),
}


def syntax_error(text: str, token: Token | None) -> str:
    """``Syntax error; token: "x", near: "..."``: the token where reading stopped and the text from the token
    before it (or the start) to the token after it (or the end)."""
    tokens = tokenize(text, KEYWORDS)
    if token is None or token.type == "$END" or token.start_pos is None:
        start = tokens[-1].start_pos if tokens else 0
        return f'Syntax error; token: "<EOF>", near: "{text[start:]}"'
    index = next((i for i, t in enumerate(tokens) if t.start_pos == token.start_pos), 0)
    start = tokens[index - 1].start_pos if index > 0 else 0
    end = tokens[index + 1].end_pos if index + 1 < len(tokens) else tokens[index].end_pos
    return f'Syntax error; token: "{token}", near: "{text[start:end]}"'


@lru_cache(maxsize=4096)
def parse(text: str, grammar: str, kind: str) -> RawExpression:
    """Parse ``text`` with ``grammar`` ("condition", "update", "projection"); ``kind`` names the parameter in
    error messages ("ConditionExpression" ...). Raises ValidationException with DynamoDB's message."""
    prefix = f"Invalid {kind}: "
    if text == "":
        raise ValidationException(prefix + "The expression can not be empty;")
    size = len(text.encode())
    if size > MAX_EXPRESSION_BYTES:
        raise ValidationException(
            prefix + f"Expression size has exceeded the maximum allowed size; expression size: {size}"
        )
    try:
        tree = _PARSERS[grammar].parse(text)
        built = _Build().transform(tree)
    except UnexpectedToken as exc:
        raise ValidationException(prefix + syntax_error(text, exc.token)) from None
    except UnexpectedInput as exc:
        raise ValidationException(prefix + syntax_error(text, None)) from exc
    except VisitError as exc:
        if isinstance(exc.orig_exc, _Syntax):
            raise ValidationException(prefix + syntax_error(text, exc.orig_exc.token)) from None
        raise
    checks = Checks(grammar, prefix)
    if grammar == "condition":
        checks.parens(built[0])
        checks.count(built[0])
        checks.condition(built[0], "condition")
        tree_out: Any = built[0]
    elif grammar == "update":
        for _, actions in built:
            for action in actions:
                if isinstance(action[1], tuple):
                    checks.parens(action[1])
        checks.update(built)
        tree_out = built
    else:
        for path in built:
            checks.path(path)
        tree_out = built
    return RawExpression(tree_out, tuple(dict.fromkeys(checks.names)), tuple(dict.fromkeys(checks.values)))


def unwrap(node: Any) -> Any:
    """An operand without its parentheses."""
    while node[0] == "oparen":
        node = node[1]
    return node
