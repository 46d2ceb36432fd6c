"""Small arithmetic expressions used by task files (shapes, launch sizes, costs, constraints).

An expression is a Python-syntax arithmetic formula over named integers (problem-size parameters
and knobs): ``ceil_div(N, BLOCK)``, ``2*M*N*K``, ``BLOCK_M % WARP == 0``. Only numbers, names,
arithmetic, comparisons, ``and``/``or``/``not`` and the functions in :data:`FUNCTIONS` are allowed;
anything else is rejected when the task is loaded, never executed.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


FUNCTIONS = {
    "ceil_div": _ceil_div,
    "cdiv": _ceil_div,
    "min": min,
    "max": max,
    "abs": abs,
    "sqrt": math.sqrt,
    "log2": math.log2,
    "exp": math.exp,
    "int": int,
    "float": float,
}

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


class ExprError(ValueError):
    """An expression that is not valid task-file arithmetic."""


@dataclass(frozen=True)
class Expr:
    """A parsed, validated expression; ``names`` are the variables it reads."""

    text: str

    @cached_property
    def _tree(self) -> ast.expr:
        try:
            tree = ast.parse(self.text.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ExprError(f"cannot parse expression {self.text!r}: {exc.msg}") from None
        _check(tree, self.text)
        return tree

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(
            node.id for node in ast.walk(self._tree) if isinstance(node, ast.Name) and node.id not in FUNCTIONS
        )

    def validate(self) -> None:
        """Raise :class:`ExprError` unless the expression parses and uses only allowed syntax."""
        self._tree  # noqa: B018 - parsing is the check

    def eval(self, env: Mapping[str, float]) -> float:
        """Evaluate with variables from ``env``; missing names raise :class:`ExprError`."""
        return _eval(self._tree, env, self.text)

    def eval_int(self, env: Mapping[str, float]) -> int:
        """Evaluate and require an integral result (shapes, grid and block sizes)."""
        value = self.eval(env)
        if isinstance(value, bool) or float(value) != int(value):
            raise ExprError(f"expression {self.text!r} gave {value!r}, expected an integer")
        return int(value)


_STRUCTURAL = (
    ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.IfExp, ast.Name,
    ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop,
)


def _check(node: ast.AST, text: str) -> None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            if not isinstance(sub.func, ast.Name) or sub.func.id not in FUNCTIONS:
                name = sub.func.id if isinstance(sub.func, ast.Name) else ast.unparse(sub.func)
                raise ExprError(
                    f"unknown function {name!r} in {text!r}; allowed: {', '.join(sorted(FUNCTIONS))}"
                )
            if sub.keywords:
                raise ExprError(f"keyword arguments are not allowed in {text!r}")
        elif isinstance(sub, ast.Constant):
            if not isinstance(sub.value, int | float) or isinstance(sub.value, bool):
                raise ExprError(f"only numbers are allowed as constants in {text!r}, got {sub.value!r}")
        elif isinstance(sub, ast.BinOp) and type(sub.op) not in _BINARY:
            raise ExprError(f"operator {type(sub.op).__name__} is not allowed in {text!r}")
        elif not isinstance(sub, _STRUCTURAL):
            raise ExprError(f"{type(sub).__name__} is not allowed in expression {text!r}")


def _eval(node: ast.expr, env: Mapping[str, float], text: str):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise ExprError(f"unknown name {node.id!r} in {text!r}")
        return env[node.id]
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, env, text), _eval(node.right, env, text)
        try:
            return _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ExprError(f"division by zero in {text!r}") from None
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, env, text))
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, env, text) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env, text)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, env, text)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, env, text) else node.orelse, env, text)
    if isinstance(node, ast.Call):
        return FUNCTIONS[node.func.id](*(_eval(a, env, text) for a in node.args))
    raise ExprError(f"cannot evaluate {ast.unparse(node)!r} in {text!r}")
