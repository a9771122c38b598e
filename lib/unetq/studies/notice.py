"""What a notebook says about where its numbers come from: the line at the top of every
notebook's output under the ``ci`` preset (the default parameters of the committed notebooks,
what nbval and a fresh JupyterLab session run: smoke-test output of a tiny run, not results of
the study), and why something is missing, in two kinds only: the hardware it needs is absent
here (:data:`NOT_MEASURED`), or the work that fills it has not run yet (:data:`NOT_RUN_YET`, with
the command, its preset included).

- :func:`smoke_test_notice`  the line (HTML) for a preset, ``""`` for a study preset
- :func:`show_preset_notice` display it (and an optional note) in a notebook; returns None
- :func:`run_command`, :func:`not_run_yet`, :func:`not_measured_here`, :func:`missing_reason`
"""
from __future__ import annotations

import html
import re

from IPython.display import HTML, display

from ..results import NOT_RUN

#: The preset whose outputs only check that the code runs.
SMOKE_PRESET = "ci"
#: Why something is missing: the hardware it needs is absent here (CUDA, TensorRT) ...
NOT_MEASURED = "not measured on this machine"
#: ... or the work that fills it has not run (it could run here).
NOT_RUN_YET = "not run yet"
#: The prefix of ``unetq.results.read``'s messages about a missing or empty table.
_READ_PREFIX = NOT_RUN + ": "


def run_command(preset: str | None = None, target: str = "all") -> str:
    """The command that runs the study (``make all PRESET=quick``); ``target`` another make target."""
    return f"make {target}" + (f" PRESET={preset}" if preset else "")


def not_run_yet(why: str, preset: str | None = None, command: str | None = None) -> str:
    """``"not run yet: <why>; run `make all PRESET=<preset>`"``."""
    return f"{NOT_RUN_YET}: {why}; run `{command or run_command(preset)}`"


def not_measured_here(why: str) -> str:
    """``"not measured on this machine: <why>"``: only for hardware that is absent."""
    return f"{NOT_MEASURED}: {why}"


def missing_reason(message: str) -> str:
    """A ``unetq.results.read`` message (a table missing, empty, without rows of a preset) without
    its generic prefix."""
    return message[len(_READ_PREFIX):] if message.startswith(_READ_PREFIX) else message

_STYLE = ("border-left:4px solid #bf8700;background:#fff8c5;padding:6px 10px;margin:4px 0;"
          "font-family:system-ui,sans-serif;font-size:14px")


def smoke_test_notice(preset: str | None) -> str:
    """HTML of the smoke-test line when ``preset`` is the ``ci`` preset, else ``""``."""
    if preset != SMOKE_PRESET:
        return ""
    return (f'<div class="unetq-smoke-test" style="{_STYLE}"><b>Smoke-test output (preset '
            f'<code>{SMOKE_PRESET}</code>)</b>: a tiny run (few images, a couple of epochs) that checks the '
            "code works. Its numbers are not results of the study: run <code>make all PRESET=quick</code> "
            "for those (or read <code>reports/index.html</code>, the committed study).</div>")


def show_preset_notice(preset: str | None, note: str = "") -> None:
    """Display the smoke-test line for ``preset`` (nothing for a study preset) and ``note`` (plain
    text, e.g. which preset a report shows and why). Returns None, so a cell ending with it shows
    no value."""
    body = smoke_test_notice(preset)
    if note:
        text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(note))
        body += f'<p class="unetq-preset-note" style="font-family:system-ui,sans-serif">{text}</p>'
    if body:
        display(HTML(body))
