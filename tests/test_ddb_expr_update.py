"""UpdateExpression and ProjectionExpression: every action, its semantics and its errors (pure, no server)."""

from __future__ import annotations

import copy

import pytest

from tables import expressions as E
from tables.expressions import ValidationException

ITEM = {
    "pk": {"S": "k"},
    "n": {"N": "5"},
    "s": {"S": "text"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2"]},
    "l": {"L": [{"S": "a"}, {"S": "b"}, {"S": "c"}, {"S": "d"}]},
    "m": {"M": {"tally": {"N": "10"}, "keep": {"S": "k"}, "child": {"M": {"x": {"N": "1"}}}}},
}


def N(x: object) -> dict:
    return {"N": str(x)}


def S(x: str) -> dict:
    return {"S": x}


def run(text: str, values: dict | None = None, names: dict | None = None, item: dict | None = None) -> dict:
    source = copy.deepcopy(ITEM) if item is None else item
    before = copy.deepcopy(source)
    new = E.update(text, names, values).apply(source)
    assert source == before, "apply() must not change its argument"
    return new


def refused(text: str, values: dict | None = None, names: dict | None = None, item: dict | None = None) -> str:
    with pytest.raises(ValidationException) as info:
        E.update(text, names, values).apply(copy.deepcopy(ITEM) if item is None else item)
    return info.value.message


def test_set_values_and_paths() -> None:
    new = run("SET a = :v, m.tally = :n, m.child.y = :v, l[1] = :v", {":v": S("x"), ":n": N(1)})
    assert new["a"] == S("x")
    assert new["m"]["M"]["tally"] == N(1) and new["m"]["M"]["keep"] == S("k")
    assert new["m"]["M"]["child"]["M"] == {"x": N(1), "y": S("x")}
    assert new["l"]["L"][1] == S("x")


def test_set_copies_an_attribute_and_reads_the_old_item() -> None:
    new = run("SET a = n, n = :v", {":v": N(9)})
    assert new["a"] == N(5) and new["n"] == N(9)


def test_set_arithmetic() -> None:
    assert run("SET n = n + :d", {":d": N("0.5")})["n"] == N("5.5")
    assert run("SET n = n - :d", {":d": N(7)})["n"] == N(-2)
    assert run("SET m.tally = m.tally + :d", {":d": N(5)})["m"]["M"]["tally"] == N(15)
    assert run("SET a = :x + :y", {":x": N("1E+2"), ":y": N("0.10")})["a"] == N("100.1")
    assert run("SET n = (n + :d)", {":d": N(1)})["n"] == N(6)


def test_set_arithmetic_keeps_38_digits_and_the_range() -> None:
    big = "1" + "0" * 36 + "1"  # 38 digits
    assert run("SET n = :a + :b", {":a": N("9" * 38), ":b": N(1)})["n"] == N("1" + "0" * 38)
    assert refused("SET n = :a + :b", {":a": N(big), ":b": N("0.1")}) == (
        "Attempting to store more than 38 significant digits in a Number"
    )
    assert refused("SET n = :a + :a", {":a": N("9.9E+125")}) == (
        "Number overflow. Attempting to store a number with magnitude larger than supported range"
    )


def test_if_not_exists_and_list_append() -> None:
    assert run("SET n = if_not_exists(n, :z)", {":z": N(0)})["n"] == N(5)
    assert run("SET c = if_not_exists(c, :z) + :one", {":z": N(0), ":one": N(1)})["c"] == N(1)
    new = run("SET l = list_append(l, :more)", {":more": {"L": [S("e")]}})
    assert [x["S"] for x in new["l"]["L"]] == ["a", "b", "c", "d", "e"]
    new = run("SET l = list_append(:more, l)", {":more": {"L": [S("z")]}})
    assert new["l"]["L"][0] == S("z")
    new = run(
        "SET fresh = list_append(if_not_exists(fresh, :empty), :more)", {":empty": {"L": []}, ":more": {"L": [N(1)]}}
    )
    assert new["fresh"] == {"L": [N(1)]}


def test_set_index_past_the_end_appends() -> None:
    new = run("SET l[10] = :v", {":v": S("z")})
    assert [x["S"] for x in new["l"]["L"]] == ["a", "b", "c", "d", "z"]
    assert run("SET e[0] = :v", {":v": S("z")}, item={"e": {"L": []}}) == {"e": {"L": [S("z")]}}


def test_the_new_item_shares_nothing_with_the_old_one_or_the_request() -> None:
    values = {":v": {"M": {"x": N(1)}}}
    old = copy.deepcopy(ITEM)
    new = E.update("SET a = :v, b = m", None, values).apply(old)
    new["a"]["M"]["x"] = N(2)
    new["b"]["M"]["keep"] = S("changed")
    assert values[":v"] == {"M": {"x": N(1)}} and old == ITEM


def test_remove() -> None:
    new = run("REMOVE s, m.keep, gone")
    assert "s" not in new and "keep" not in new["m"]["M"] and new["m"]["M"]["tally"] == N(10)
    new = run("REMOVE l[1], l[2]")  # both original elements, not b then d
    assert [x["S"] for x in new["l"]["L"]] == ["a", "d"]
    assert run("REMOVE l[9]")["l"] == ITEM["l"]


def test_add_numbers_and_sets() -> None:
    assert run("ADD n :d", {":d": N(-6)})["n"] == N(-1)
    assert run("ADD c :d", {":d": N(3)})["c"] == N(3)
    assert set(run("ADD ss :v", {":v": {"SS": ["b", "c"]}})["ss"]["SS"]) == {"a", "b", "c"}
    assert set(run("ADD ns :v", {":v": {"NS": ["2.0", "3"]}})["ns"]["NS"]) == {"1", "2", "3"}
    assert run("ADD fresh :v", {":v": {"SS": ["x"]}})["fresh"] == {"SS": ["x"]}
    assert run("ADD m.tally :d", {":d": N(1)})["m"]["M"]["tally"] == N(11)


def test_delete_from_sets() -> None:
    assert run("DELETE ss :v", {":v": {"SS": ["a", "zz"]}})["ss"] == {"SS": ["b"]}
    assert "ss" not in run("DELETE ss :v", {":v": {"SS": ["a", "b"]}})  # emptied: removed
    assert run("DELETE ns :v", {":v": {"NS": ["1.0"]}})["ns"] == {"NS": ["2"]}
    assert "gone" not in run("DELETE gone :v", {":v": {"SS": ["a"]}})


def test_all_clauses_in_one_expression_in_any_order_and_case() -> None:
    new = run(
        "remove s add n :one delete ss :a set m.keep = :v",
        {":one": N(1), ":a": {"SS": ["a"]}, ":v": S("v")},
    )
    assert "s" not in new and new["n"] == N(6) and new["ss"] == {"SS": ["b"]} and new["m"]["M"]["keep"] == S("v")


def test_a_new_item_from_the_key() -> None:
    new = E.update("SET a = :v ADD c :one", None, {":v": S("x"), ":one": N(1)}).apply({"pk": S("new")})
    assert new == {"pk": S("new"), "a": S("x"), "c": N(1)}
    assert E.update("SET a = :v", None, {":v": S("x")}).apply(None) == {"a": S("x")}


def test_updated_paths_and_returned_parts() -> None:
    upd = E.update("SET m.child.x = :v, a = :v REMOVE s ADD n :one", None, {":v": N(2), ":one": N(1)})
    assert upd.updated_paths == {"m", "a", "s", "n"}
    old = copy.deepcopy(ITEM)
    new = upd.apply(old)
    assert upd.updated(old) == {"m": {"M": {"child": {"M": {"x": N(1)}}}}, "s": S("text"), "n": N(5)}
    assert upd.updated(new) == {"m": {"M": {"child": {"M": {"x": N(2)}}}}, "a": N(2), "n": N(6)}


def test_check_key() -> None:
    upd = E.update("SET pk = :v", None, {":v": S("x")})
    with pytest.raises(ValidationException) as info:
        upd.check_key(["pk", "sk"])
    assert info.value.message == (
        "One or more parameter values were invalid: Cannot update attribute pk. This attribute is part of the key"
    )
    E.update("SET a = :v", None, {":v": S("x")}).check_key(["pk"])


@pytest.mark.parametrize(
    ("text", "values", "message"),
    [
        ("SET a.b = :v", {":v": S("x")}, "The document path provided in the update expression is invalid for update"),
        ("SET s.b = :v", {":v": S("x")}, "The document path provided in the update expression is invalid for update"),
        ("SET l.b = :v", {":v": S("x")}, "The document path provided in the update expression is invalid for update"),
        ("SET m[0] = :v", {":v": S("x")}, "The document path provided in the update expression is invalid for update"),
        (
            "SET gone[0] = :v",
            {":v": S("x")},
            "The document path provided in the update expression is invalid for update",
        ),
        ("SET a = s + :v", {":v": N(1)}, "An operand in the update expression has an incorrect data type"),
        (
            "SET a = list_append(s, :v)",
            {":v": {"L": []}},
            "An operand in the update expression has an incorrect data type",
        ),
        ("SET a = list_append(l, s)", None, "An operand in the update expression has an incorrect data type"),
        ("ADD s :v", {":v": N(1)}, "An operand in the update expression has an incorrect data type"),
        ("ADD ss :v", {":v": {"NS": ["1"]}}, "An operand in the update expression has an incorrect data type"),
        ("DELETE ss :v", {":v": {"NS": ["1"]}}, "An operand in the update expression has an incorrect data type"),
        ("SET a = gone", None, "The provided expression refers to an attribute that does not exist in the item"),
        (
            "SET a = gone + :v",
            {":v": N(1)},
            "The provided expression refers to an attribute that does not exist in the item",
        ),
        (
            "SET a = list_append(gone, :v)",
            {":v": {"L": []}},
            "The provided expression refers to an attribute that does not exist in the item",
        ),
    ],
)
def test_run_time_errors(text: str, values: dict | None, message: str) -> None:
    assert refused(text, values) == message


@pytest.mark.parametrize(
    ("text", "values", "names", "message"),
    [
        ("", None, None, "Invalid UpdateExpression: The expression can not be empty;"),
        (
            "INVALID SYNTAX HERE",
            None,
            None,
            'Invalid UpdateExpression: Syntax error; token: "INVALID", near: "INVALID SYNTAX"',
        ),
        ("SET a = :v,", {":v": N(1)}, None, 'Invalid UpdateExpression: Syntax error; token: "<EOF>", near: ","'),
        ("SET a < :v", {":v": N(1)}, None, 'Invalid UpdateExpression: Syntax error; token: "<", near: "a < :v"'),
        ("ADD a b", None, None, 'Invalid UpdateExpression: Syntax error; token: "b", near: "a b"'),
        (
            "SET a = :v SET b = :v",
            {":v": N(1)},
            None,
            'Invalid UpdateExpression: The "SET" section can only be used once in an update expression;',
        ),
        (
            "REMOVE a REMOVE b",
            None,
            None,
            'Invalid UpdateExpression: The "REMOVE" section can only be used once in an update expression;',
        ),
        (
            "SET #s = :v",
            {":v": N(1)},
            None,
            "Invalid UpdateExpression: An expression attribute name used in the document path is not defined; "
            "attribute name: #s",
        ),
        (
            "SET a = :v",
            None,
            None,
            "Invalid UpdateExpression: An expression attribute value used in expression is not defined; "
            "attribute value: :v",
        ),
        (
            "SET status = :v",
            {":v": N(1)},
            None,
            "Invalid UpdateExpression: Attribute name is a reserved keyword; reserved keyword: status",
        ),
        ("SET a = foo(b)", None, None, "Invalid UpdateExpression: Invalid function name; function: foo"),
        (
            "SET a = size(b)",
            None,
            None,
            "Invalid UpdateExpression: The function is not allowed in an update expression; function: size",
        ),
        (
            "SET a = :v, a.b = :v",
            {":v": N(1)},
            None,
            "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of "
            "these paths; path one: [a], path two: [a, b]",
        ),
        (
            "SET a = :v REMOVE a",
            {":v": N(1)},
            None,
            "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of "
            "these paths; path one: [a], path two: [a]",
        ),
        (
            "SET a.b = :v REMOVE a[0]",
            {":v": N(1)},
            None,
            "Invalid UpdateExpression: Two document paths conflict with each other; must remove or rewrite one of "
            "these paths; path one: [a, b], path two: [a, [0]]",
        ),
        (
            "ADD a :v",
            {":v": S("x")},
            None,
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, "
            "operand type: STRING, typeSet: ALLOWED_FOR_ADD_OPERAND",
        ),
        (
            "DELETE a :v",
            {":v": N(1)},
            None,
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, "
            "operand type: NUMBER, typeSet: ALLOWED_FOR_DELETE_OPERAND",
        ),
        (
            "SET a = :v + :w",
            {":v": S("x"), ":w": N(1)},
            None,
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: +, "
            "operand type: S",
        ),
        (
            "SET a = list_append(a, :v)",
            {":v": N(1)},
            None,
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: "
            "list_append, operand type: N",
        ),
        (
            "SET a = if_not_exists(:v, :v)",
            {":v": N(1)},
            None,
            "Invalid UpdateExpression: Operator or function requires a document path; operator or function: "
            "if_not_exists",
        ),
        (
            "SET a = list_append(a)",
            None,
            None,
            "Invalid UpdateExpression: Incorrect number of operands for operator or function; operator or "
            "function: list_append, number of operands: 1",
        ),
    ],
)
def test_validation_errors(text: str, values: dict | None, names: dict | None, message: str) -> None:
    with pytest.raises(ValidationException) as info:
        E.update(text, names, values)
    assert info.value.message == message


def test_projection() -> None:
    proj = E.projection("m.child.x, l[1], l[3], s, #p, gone, m.gone", {"#p": "pk"})
    assert proj.apply(ITEM) == {
        "m": {"M": {"child": {"M": {"x": N(1)}}}},
        "l": {"L": [S("b"), S("d")]},
        "s": S("text"),
        "pk": S("k"),
    }
    assert proj.attributes == {"m", "l", "s", "pk", "gone"}
    # a map key that looks like a type descriptor is still a map key
    item = {"a": {"M": {"L": {"M": {"x": N(1)}}, "other": N(2)}}}
    assert E.projection("a.L").apply(item) == {"a": {"M": {"L": {"M": {"x": N(1)}}}}}


@pytest.mark.parametrize(
    ("text", "names", "message"),
    [
        ("", None, "Invalid ProjectionExpression: The expression can not be empty;"),
        ("a,", None, 'Invalid ProjectionExpression: Syntax error; token: "<EOF>", near: ","'),
        ("a = b", None, 'Invalid ProjectionExpression: Syntax error; token: "=", near: "a = b"'),
        ("name", None, "Invalid ProjectionExpression: Attribute name is a reserved keyword; reserved keyword: name"),
        (
            "#n",
            None,
            "Invalid ProjectionExpression: An expression attribute name used in the document path is not defined; "
            "attribute name: #n",
        ),
        (
            "a, a.b",
            None,
            "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or rewrite one of "
            "these paths; path one: [a], path two: [a, b]",
        ),
        (
            "a, #a",
            {"#a": "a"},
            "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or rewrite one of "
            "these paths; path one: [a], path two: [a]",
        ),
    ],
)
def test_projection_errors(text: str, names: dict | None, message: str) -> None:
    with pytest.raises(ValidationException) as info:
        E.projection(text, names)
    assert info.value.message == message


def update_refused(text: str, values: dict | None = None, names: dict | None = None) -> str:
    with pytest.raises(ValidationException) as info:
        E.update(text, names, values)
    return info.value.message


def test_the_order_in_which_an_update_is_checked() -> None:
    # the written paths' names, then overlaps, then from the last action back: names, then values and types
    assert "attribute name: #t" in update_refused("SET a = :x, #t = :y")
    assert "Two document paths overlap" in update_refused("SET a = :x, a = :y")
    assert "attribute value: :y" in update_refused("SET a = :x, b = :y")
    assert "attribute name: #n" in update_refused("SET a = :x, b = #n")
    assert "operator or function: +" in update_refused("SET a = :x, b = :s + :s", {":s": S("x")})
    assert "attribute value: :x" in update_refused("SET a = :s + :s, b = :x", {":s": S("x")})
    # sections are read in the order they first appear; a repeated one fails after its actions were read
    assert "reserved keyword: status" in update_refused("SET status = :v SET b = :v", {":v": N(1)})
    assert 'The "SET" section' in update_refused("SET a = :v SET b = :v REMOVE status", {":v": N(1)})


def test_run_time_errors_come_in_dynamodbs_order() -> None:
    one = {":one": N(1), ":v": S("v")}
    path = "The document path provided in the update expression is invalid for update"
    wrong = "An operand in the update expression has an incorrect data type"
    gone = "The provided expression refers to an attribute that does not exist in the item"
    # a parent of the wrong kind first, then types, then (clause by clause from the last) missing parents
    # and missing operands
    assert refused("SET x = s + :one, s.b = :v", one) == path
    assert refused("SET x = gone, y = s + :one", one) == wrong
    assert refused("SET x = gone + s", one) == wrong
    assert refused("SET x = gone REMOVE nope.b", one) == path
    assert refused("REMOVE nope.b SET x = gone", one) == gone
    assert refused("DELETE nope.b :s", {":s": {"SS": ["a"]}}) == path
    assert refused("ADD nope.b :one", one) == path


def test_writes_into_one_list_use_the_old_positions() -> None:
    new = run("SET l[10] = :x, l[8] = :y", {":x": S("x"), ":y": S("y")})
    assert [e["S"] for e in new["l"]["L"]] == ["a", "b", "c", "d", "y", "x"]
    new = run("REMOVE l[0] SET l[1] = :v", {":v": S("v")})
    assert [e["S"] for e in new["l"]["L"]] == ["v", "c", "d"]


@pytest.mark.parametrize(
    ("text", "names", "message"),
    [
        # overlaps are found walking the paths as a tree, newest branch first, as DynamoDB reports them
        (
            "SET d[1] = a, d.b = a, c[1].a = a, #c = if_not_exists(a, a)",
            {"#c": "c"},
            "overlap with each other; must remove or rewrite one of these paths; path one: [c, [1], a], path two: [c]",
        ),
        (
            "SET #c[3].#d = a, #c[3] = a",
            {"#c": "c", "#d": "[3]"},
            "overlap with each other; must remove or rewrite one of these paths; path one: [c, [3], [3]], "
            "path two: [c, [3]]",
        ),
        (
            "SET #c[3].#d = a, #c.#d[3] = if_not_exists(a, a)",
            {"#c": "c", "#d": "[3]"},
            "conflict with each other; must remove or rewrite one of these paths; path one: [c, [3], [3]], "
            "path two: [c, [3], [3]]",
        ),
        (
            "REMOVE a.#c SET a[1] = b",
            {"#c": "c"},
            "conflict with each other; must remove or rewrite one of these paths; path one: [a, c], path two: [a, [1]]",
        ),
    ],
)
def test_overlaps_reported_as_dynamodb_does(text: str, names: dict, message: str) -> None:
    assert update_refused(text, None, names) == "Invalid UpdateExpression: Two document paths " + message


def test_parentheses_in_updates() -> None:
    new = run("SET a = ((m.tally) + (:one)), b = (s)", {":one": N(1)})
    assert new["a"] == N(11) and new["b"] == S("text")
    assert update_refused("SET a = ((s))") == "Invalid UpdateExpression: The expression has redundant parentheses;"
    for text in ("SET a = b + c + d", "SET a = (b.c).d + e", "SET (a = (b + c))", 'SET a[1] = "eight"'):
        assert update_refused(text).startswith("Invalid UpdateExpression: Syntax error; "), text


def test_many_writes_into_nested_maps_and_lists() -> None:
    key = S("k")
    old = {"a": key, "b": {"M": {"a": N(1), "b": N(2), "c": N(3)}}, "c": {"L": [N(1), N(3)]}}
    upd = E.update(
        "set b.c=((c[1])+(b.a)),b.a = a,c[1] = a, c[4] = b.a - b.b, c[2] = b.c add c[8] :b, c[6] :a",
        None,
        {":a": N(2), ":b": {"SS": ["a"]}},
    )
    new = upd.apply(old)
    assert new == {
        "a": key,
        "b": {"M": {"a": key, "b": N(2), "c": N(4)}},
        "c": {"L": [N(1), key, N(3), N(-1), N(2), {"SS": ["a"]}]},
    }
    assert upd.updated(new) == {"b": {"M": {"a": key, "c": N(4)}}, "c": {"L": [key, N(3), N(2)]}}
