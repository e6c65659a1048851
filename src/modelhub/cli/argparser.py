"""The command line's ``ArgumentParser`` (imported when a parser is built, never on the fast
path: ``argparse`` costs start-up time)."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from .output import PROG


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose value errors are one line: a value an option or argument refuses
    (a bad number, a choice not offered) names the option and what to give, exit 2; an unknown
    option or a missing argument still shows the (sub)command's usage."""

    bad_value: argparse.ArgumentError | None = None

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as exc:
            self.bad_value = exc
            raise

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            self.bad_value = exc
            raise

    def error(self, message: str) -> NoReturn:
        """One line for a refused value; argparse's usage + message otherwise."""
        bad = self.bad_value
        if bad is None or str(bad) != message:
            super().error(message)
        command = self.prog.removeprefix(PROG).strip()
        where = " ".join(w for w in (command, bad.argument_name or "") if w)
        self.exit(2, f"{PROG}: error: {where}: {bad.message}\n")


__all__ = ["Parser"]
