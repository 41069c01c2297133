"""The click group every facesearch command line uses (kept free of heavy imports, so the
broker's command starts without loading the models)."""

from typing import Any

import click

from facesearch.errors import FaceSearchError

EXIT_ERROR = 1


class ReportingGroup(click.Group):
    """Turns facesearch's own errors into one line on stderr and exit status 1, and an
    interrupt into exit status 130, instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        prog = ctx.find_root().info_name
        try:
            return super().invoke(ctx)
        except FaceSearchError as exc:
            click.echo(f"{prog}: error: {exc}", err=True)
            ctx.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo(f"{prog}: interrupted", err=True)
            ctx.exit(130)
