"""The task metadata several diagnosis tests share: ``kernel(const float* x, float* y, int n)`` over N floats."""

from __future__ import annotations


def stream_meta(kernel: str, *, grid: str, block: str, n: int | str = 16777216, extra: str = "") -> str:
    """The ``/* kernelpro */`` block for such a kernel; ``extra`` is more TOML (args, knobs, cost, ...)."""
    return f'''/* kernelpro
[task]
kernel = "{kernel}"
[params]
N = {n}
[[args]]
name = "x"
dtype = "float32"
shape = ["N"]
intent = "in"
[[args]]
name = "y"
dtype = "float32"
shape = ["N"]
intent = "out"
[[args]]
name = "n"
dtype = "int32"
value = "N"
{extra}
[launch]
grid = ["{grid}"]
block = ["{block}"]
*/
'''
