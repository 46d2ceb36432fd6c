"""Task-file arithmetic: allowed syntax evaluates, anything else is rejected before it runs."""

import pytest

from kernelpro.expr import Expr, ExprError


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("ceil_div(N, BLOCK)", {"N": 1000, "BLOCK": 256}, 4),
        ("cdiv(N, 32) * 32", {"N": 33}, 64),
        ("2*M*N*K", {"M": 2, "N": 3, "K": 4}, 48),
        ("min(N, 1024) + max(1, N // 2)", {"N": 10}, 15),
        ("BLOCK % 32 == 0 and BLOCK <= 1024", {"BLOCK": 96}, True),
        ("BLOCK % 32 == 0 and BLOCK <= 1024", {"BLOCK": 100}, False),
        ("1 << LOG", {"LOG": 5}, 32),
        ("N if N < 10 else 10", {"N": 40}, 10),
        ("-N + 3", {"N": 1}, 2),
    ],
)
def test_evaluates(text, env, expected) -> None:
    assert Expr(text).eval(env) == expected


def test_names_exclude_functions() -> None:
    assert Expr("ceil_div(N, BLOCK) * max(M, 1)").names == {"N", "BLOCK", "M"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("__import__('os').system('true')", "unknown function"),
        ("__import__('os')", "unknown function '__import__'"),
        ("N.real", "Attribute is not allowed"),
        ("[N]", "List is not allowed"),
        ("'abc'", "only numbers are allowed"),
        ("f(N)", "unknown function 'f'"),
        ("max(N, key=1)", "keyword arguments"),
        ("a @ b", "operator MatMult"),
        ("N *", "cannot parse"),
        ("lambda: 1", "Lambda is not allowed"),
    ],
)
def test_rejects_anything_but_arithmetic(text, words) -> None:
    with pytest.raises(ExprError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Expr(text).validate()


def test_unknown_name_and_division_by_zero_are_expr_errors() -> None:
    with pytest.raises(ExprError, match="unknown name 'M'"):
        Expr("M + 1").eval({})
    with pytest.raises(ExprError, match="division by zero"):
        Expr("N // 0").eval({"N": 1})


def test_eval_int_requires_integers() -> None:
    assert Expr("N / 2").eval_int({"N": 8}) == 4
    with pytest.raises(ExprError, match="expected an integer"):
        Expr("N / 3").eval_int({"N": 8})
