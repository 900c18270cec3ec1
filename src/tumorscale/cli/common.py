"""What every `tumorscale` command shares: option types and the error exit."""

from __future__ import annotations

from typing import Annotated

import typer

from tumorscale.cli.output import stderr, tagged
from tumorscale.errors import TumorscaleError
from tumorscale.organs import TUMOR_ORGANS, get_organ

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
Workers = Annotated[
    int, typer.Option(help="Parallel worker processes (default: CPU count, at most 8).")
]
Organs = Annotated[
    list[str] | None,
    typer.Option(
        "--organ", help=f"Restrict to these organs ({', '.join(TUMOR_ORGANS)}); repeatable."
    ),
]


def fail(error: TumorscaleError | ValueError) -> typer.Exit:
    """Print `error: ...` (naming the file) on stderr; the exit (code 2) to raise."""
    stderr.print(tagged("error", "red", error), soft_wrap=True)
    return typer.Exit(code=2)


def selected_organs(organs: list[str] | None) -> list[str]:
    return [get_organ(name).name for name in organs] if organs else list(TUMOR_ORGANS)
