"""The checks of an expression that need no placeholder, made once per text when it is parsed.

Redundant parentheses are found as the text is read; the rest (list indexes, reserved words, function names
and where each function may be used, the number of a condition function's operands, repeated update
sections) in the order the expression is written, raising the first problem met, as DynamoDB does.
"""

from __future__ import annotations

from typing import Any

from .errors import ValidationException
from .reserved import is_reserved

MAX_OPERATORS = 300
MAX_LIST_INDEX = 2**31 - 1
CONDITION_FUNCTIONS = {
    "attribute_exists": 1,
    "attribute_not_exists": 1,
    "attribute_type": 2,
    "begins_with": 2,
    "contains": 2,
    "size": 1,
}
UPDATE_FUNCTIONS = {"if_not_exists": 2, "list_append": 2}
RawPath = tuple[str | int, ...]


class Checks:
    """The checks of one parsed text; collects the placeholders it uses (``names``, ``values``)."""

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
