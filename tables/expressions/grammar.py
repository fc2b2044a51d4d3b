"""The grammars of DynamoDB's expressions (lark, LALR) and their raw syntax trees, parsed once per text.

One tokenizer serves every grammar, so a syntax error can be reported as DynamoDB does: the offending token
and the source from the token before it to the token after it (``token: "-", near: "a-b"``; ``"<EOF>"`` at
the end). Keywords are case-insensitive; function names are not.

The raw trees keep placeholders unresolved (``#n`` names, ``:v`` values), so the cache is keyed by the text
alone; checks that need no placeholder (redundant parentheses, unknown or misplaced functions, reserved
words, repeated update clauses) are made here, in DynamoDB's order of precedence between them.
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

from .errors import ValidationException
from .reserved import is_reserved

MAX_EXPRESSION_BYTES = 4096
MAX_OPERATORS = 300
MAX_LIST_INDEX = 2**31 - 1

_TOKEN = re.compile(
    r"(?P<WS>[ \t\r\n]+)|(?P<ATTR_NAME>#[A-Za-z0-9_]+)|(?P<ATTR_VALUE>:[A-Za-z0-9_]+)|(?P<NAME>[A-Za-z][A-Za-z0-9_]*)"
    r"|(?P<INT>0|[1-9][0-9]*)|(?P<COMP><>|<=|>=|=|<|>)|(?P<PUNCT>[()\[\],.+\-])|(?P<ILLEGAL>.)",
    re.DOTALL,
)
_PUNCT = {"(": "_LPAR", ")": "_RPAR", "[": "_LSQB", "]": "_RSQB", ",": "_COMMA", ".": "_DOT", "+": "PLUS", "-": "MINUS"}
# Keywords of every expression language alike: a bare attribute name spelt like one is a syntax error.
KEYWORDS = frozenset({"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE"})
CONDITION_FUNCTIONS = {
    "attribute_exists": 1,
    "attribute_not_exists": 1,
    "attribute_type": 2,
    "begins_with": 2,
    "contains": 2,
    "size": 1,
}
UPDATE_FUNCTIONS = {"if_not_exists": 2, "list_append": 2}


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
    | operand PLUS operand -> plus
    | operand MINUS operand -> minus
    | _LPAR set_value _RPAR
call: NAME _LPAR operand (_COMMA operand)* _RPAR
?operand: path
    | ATTR_VALUE -> value
    | call
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
    checks = _Checks(grammar, prefix)
    if grammar == "condition":
        checks.parens(built[0])
        checks.count(built[0])
        checks.condition(built[0], "condition")
        tree_out: Any = built[0]
    elif grammar == "update":
        checks.update(built)
        tree_out = built
    else:
        for path in built:
            checks.path(path)
        tree_out = built
    return RawExpression(tree_out, tuple(dict.fromkeys(checks.names)), tuple(dict.fromkeys(checks.values)))


class _Checks:
    """The checks that need no placeholder. Redundant parentheses are found as the text is read; the rest
    (list indexes, reserved words, function names and where each function may be used, the number of a
    condition function's operands, repeated update sections) in the order the expression is written,
    raising the first problem met."""

    def __init__(self, grammar: str, prefix: str) -> None:
        self.grammar = grammar
        self.prefix = prefix
        self.names: list[str] = []
        self.values: list[str] = []

    def fail(self, message: str) -> ValidationException:
        return ValidationException(self.prefix + message)

    def parens(self, node: Any) -> None:
        if not isinstance(node, tuple) or not node or not isinstance(node[0], str):
            return
        if node[0] in ("paren", "oparen") and node[1][0] in ("paren", "oparen"):
            raise self.fail("The expression has redundant parentheses;")
        for child in node[1:]:
            if isinstance(child, tuple):
                if child and isinstance(child[0], tuple):
                    for grandchild in child:
                        self.parens(grandchild)
                else:
                    self.parens(child)

    def count(self, node: Any) -> None:
        operators = _count(node)
        if operators > MAX_OPERATORS:
            raise self.fail(f"The expression contains too many operators; operator count: {operators}")

    def path(self, node: tuple[str, RawPath]) -> None:
        for part in node[1]:
            if isinstance(part, int):
                if part > MAX_LIST_INDEX:
                    raise self.fail(f"List index is not within the allowable range; index: [{part}]")
            elif part.startswith("#"):
                self.names.append(part)
            elif is_reserved(part):
                raise self.fail(f"Attribute name is a reserved keyword; reserved keyword: {part}")

    def condition(self, node: Any, place: str) -> None:
        """``place``: "condition" where a condition is expected, "operand" inside one."""
        tag = node[0]
        if tag in ("and", "or", "not"):
            for child in node[1:]:
                self.condition(child, "condition")
        elif tag == "paren":
            self.condition(node[1], place)
        elif tag == "call":
            self.call(node, place)
        elif tag in ("cmp", "between", "in"):
            for operand in _operands(node):
                self.operand(operand)
        else:
            self.operand(node)

    def call(self, node: Any, place: str) -> None:
        name, args = node[1], node[2]
        if name not in CONDITION_FUNCTIONS and name not in UPDATE_FUNCTIONS:
            raise self.fail(f"Invalid function name; function: {name}")
        if self.grammar == "update":
            if name not in UPDATE_FUNCTIONS:
                raise self.fail(f"The function is not allowed in an update expression; function: {name}")
        else:
            if name in UPDATE_FUNCTIONS:
                raise self.fail(f"The function is not allowed in a condition expression; function: {name}")
            if (place == "condition") != (name != "size"):
                raise self.fail(f"The function is not allowed to be used this way in an expression; function: {name}")
            if len(args) != CONDITION_FUNCTIONS[name]:
                raise self.fail(
                    "Incorrect number of operands for operator or function; operator or function: "
                    f"{name}, number of operands: {len(args)}"
                )
        for arg in args:
            self.operand(arg)

    def operand(self, node: Any) -> None:
        tag = node[0]
        if tag == "path":
            self.path(node)
        elif tag == "value":
            self.values.append(node[1])
        elif tag == "call":
            self.call(node, "operand")
        elif tag == "oparen":
            self.operand(node[1])
        elif tag in ("+", "-"):
            self.operand(node[1])
            self.operand(node[2])

    def update(self, clauses: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Section by section, in the order each first appears; a section written twice fails after its
        actions were read."""
        sections: dict[str, list[tuple[Any, ...]]] = {}
        for clause, actions in clauses:
            sections.setdefault(clause, []).append(actions)
        for clause, repeats in sections.items():
            for actions in repeats:
                for action in actions:
                    if clause == "REMOVE":
                        self.path(action)
                    else:
                        self.path(action[0])
                        self.operand(action[1])
            if len(repeats) > 1:
                raise self.fail(f'The "{clause}" section can only be used once in an update expression;')


def _count(node: Any) -> int:
    """The operators of a condition: comparators, BETWEEN, IN, AND, OR, NOT and functions."""
    tag = node[0]
    if tag in ("and", "or"):
        return 1 + _count(node[1]) + _count(node[2])
    if tag in ("not", "paren", "oparen"):
        return (tag == "not") + _count(node[1])
    if tag == "call":
        return 1 + sum(_count(a) for a in node[2])
    if tag in ("cmp", "between", "in"):
        return 1 + sum(_count(o) for o in _operands(node))
    return 0


def _operands(node: Any) -> list[Any]:
    tag = node[0]
    if tag == "cmp":
        return [node[2], node[3]]
    if tag == "between":
        return [node[1], node[2], node[3]]
    if tag == "in":
        return [node[1], *node[2]]
    return []


def unwrap(node: Any) -> Any:
    """An operand without its parentheses."""
    while node[0] == "oparen":
        node = node[1]
    return node
