"""The interactive issue picker shown by ``agentz`` with no arguments on a terminal.

The candidate issues (gate verdict, Scheduler Agent score and reason) are listed;
Enter on one starts its run in the foreground. The Task Lead's impact analysis
(affected files and modules, risk, open questions) opens in a dialog where the
person at the terminal answers the questions or edits the plan (Ctrl+S or the
button continues; an empty answer keeps the plan). Stage output streams below the
list and the run ends with its pull request's link.

The candidates and the delivery are handed in (:mod:`agentz_app.bootstrap` builds
them over the process's database and GitHub App).

Everything the Task Lead wrote is shown as plain text (no markup), since it may
repeat the issue's untrusted text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import ClassVar

import aiohttp
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Header, Log, Static, TextArea

from agentz_app.domain.plans import Impact
from agentz_app.errors import AgentZError
from agentz_app.store.models import Run
from agentz_app.tui.candidates import Candidate

Echo = Callable[[str], None]
# Shows the Task Lead's impact analysis to the operator; resolves to their answers.
Consult = Callable[[Run, Impact], Awaitable[str]]
LoadCandidates = Callable[[], Awaitable[list[Candidate]]]
# Delivers issue N in the foreground (the composition root builds it over the process's services).
Deliver = Callable[[int, Consult, Echo], Awaitable[Run]]


def impact_text(impact: Impact) -> str:
    """The impact analysis as plain text for the dialog."""
    lines = [impact.summary, "", f"Risk: {impact.risk}"]
    lines += ["", "Affected files:", *(f"  {name}" for name in impact.files or ["(none named)"])]
    lines += ["", "Modules:", *(f"  {name}" for name in impact.modules or ["(none named)"])]
    lines += ["", "Steps:", *(f"  {i}. {step}" for i, step in enumerate(impact.steps, 1))]
    if impact.questions:
        lines += ["", "Open questions:", *(f"  Q{i}. {question}" for i, question in enumerate(impact.questions, 1))]
    return "\n".join(lines)


def answer_template(impact: Impact) -> str:
    """What the answer box starts with: one line per question to fill in."""
    return "\n".join(f"Q{i}: " for i in range(1, len(impact.questions) + 1))


def filled(answer: str) -> str:
    """The answer without unanswered template lines (``Q2:`` alone)."""
    kept = [line for line in answer.splitlines() if line.strip() and not _bare_label(line)]
    return "\n".join(kept)


def _bare_label(line: str) -> bool:
    label, sep, rest = line.strip().partition(":")
    return bool(sep) and not rest.strip() and label[:1] == "Q" and label[1:].isdigit()


class ImpactScreen(ModalScreen[str]):
    """The Task Lead's impact analysis and the operator's answers."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+s", "develop", "Develop")]

    def __init__(self, impact: Impact) -> None:
        super().__init__()
        self.impact = impact

    def compose(self) -> ComposeResult:
        with Vertical(id="impact-dialog"):
            yield Static("Impact analysis — answer the questions or edit the plan, then Develop (Ctrl+S)",
                         id="impact-title")
            with VerticalScroll(id="impact-scroll"):
                yield Static(Text(impact_text(self.impact)), id="impact")
            yield TextArea(answer_template(self.impact), id="answers")
            yield Button("Develop", id="develop", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "develop":
            self.action_develop()

    def action_develop(self) -> None:
        self.dismiss(filled(self.query_one("#answers", TextArea).text))


class IssuePicker(App[Run | None]):
    """Pick an issue, settle its impact analysis, watch it become a pull request."""

    TITLE = "Agent-Z — pick an issue"
    CSS = """
    #candidates { height: 1fr; }
    #output { height: 1fr; border-top: solid $accent; }
    #impact-dialog { width: 90%; height: 90%; border: thick $accent; background: $surface; padding: 1; }
    #impact-scroll { height: 1fr; }
    #answers { height: 8; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "quit", "Quit")]

    def __init__(self, *, repo: str, load: LoadCandidates, deliver: Deliver, web_base: str) -> None:
        super().__init__()
        self.repo = repo
        self.load = load
        self.deliver = deliver
        self.web_base = web_base.rstrip("/")
        self.candidates: list[Candidate] = []
        self.busy = False
        self.outcome: Run | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="candidates", cursor_type="row")
        yield Log(id="output")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#candidates", DataTable)
        table.add_columns("#", "title", "gate verdict", "score", "Scheduler Agent's reason")
        self.echo(f"loading the candidate issues of {self.repo} …")
        self.run_worker(self._load(), exclusive=True, group="load")

    def echo(self, line: str) -> None:
        """Append one line of stage output."""
        self.query_one("#output", Log).write_line(line)

    async def _load(self) -> None:
        try:
            self.candidates = await self.load()
        except (AgentZError, OSError, aiohttp.ClientError) as exc:  # shown to the operator, who may quit
            self.echo(f"could not load the issues: {exc}")
            return
        table = self.query_one("#candidates", DataTable)
        for c in self.candidates:
            verdict = c.verdict + (f" ({c.verdict_reason})" if c.verdict_reason else "")
            table.add_row(str(c.number), Text(c.title), Text(verdict), "" if c.score is None else str(c.score),
                          Text(c.reason), key=str(c.number))
        self.echo(f"{len(self.candidates)} open issues; Enter starts the selected one" if self.candidates
                  else "no open issue")
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if self.busy or event.row_key.value is None:
            return
        self.busy = True
        number = int(event.row_key.value)
        self.echo(f"starting {self.repo}#{number}: the Task Lead analyses the impact …")
        self.run_worker(self._deliver(number), exclusive=True, group="deliver")

    async def consult(self, run: Run, impact: Impact) -> str:
        """Show the impact analysis and wait for the operator's answers."""
        answered: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def done(answer: str | None) -> None:
            if not answered.done():
                answered.set_result(answer or "")

        self.echo(f"{run.id}: impact analysis ready ({len(impact.questions)} open questions)")
        await self.push_screen(ImpactScreen(impact), callback=done)
        answer = await answered
        self.echo(f"{run.id}: developing" + (" with your answers" if answer else " the plan as proposed"))
        return answer

    async def _deliver(self, number: int) -> None:
        try:
            run = await self.deliver(number, self.consult, self.echo)
        except (AgentZError, OSError, aiohttp.ClientError) as exc:  # shown to the operator
            self.echo(f"the run stopped: {exc}")
            self.busy = False
            return
        self.outcome = run
        if run.pr_number is not None:
            self.echo(f"{run.id}: {run.status} — pull request {self.web_base}/{run.repo}/pull/{run.pr_number}")
        else:
            self.echo(f"{run.id}: {run.status}" + (f" ({run.error})" if run.error else ""))
        self.busy = False
